"""The agent as PID 1 of a pid namespace, as the local provider runs it."""

import json
import os
import shutil
import subprocess
import time
import unittest

from .support import AgentTestCase, proc_stat, all_pids, wait_until

UNSHARE = shutil.which("unshare")
FLAGS = ["--pid", "--fork", "--mount-proc", "--kill-child"]


def namespaces_available():
    if UNSHARE is None or os.geteuid() != 0:
        return False
    try:
        return subprocess.run([UNSHARE] + FLAGS + ["true"], timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def children_of(pid):
    return [p for p in all_pids() if (proc_stat(p) or ("", 0, 0))[1] == pid]


@unittest.skipUnless(namespaces_available(), "needs root and unshare with pid namespaces")
class Pid1Tests(AgentTestCase):
    def start_as_pid1(self, *extra, **options):
        unshare = self.start_agent(*extra, prefix=[UNSHARE] + FLAGS + ["--"], **options)
        agent = wait_until(lambda: children_of(unshare.pid), 10, "the agent inside the namespace")[0]
        return unshare, agent

    def test_reaps_orphans_and_keeps_each_runs_own_status(self):
        unshare, agent = self.start_as_pid1()
        self.ctrl.wait_for(lambda: self.ctrl.registrations, what="a registration")
        self.assertEqual(json.loads(self.ctrl.registrations[0][1].decode())["pid"], 1)
        # The orphan leaves the run's session, so the run's group clean-up does not touch it;
        # when its parent exits it is re-parented to the agent, which must reap it.
        self.run_command("orphan", "setsid sh -c 'sleep 0.3' >/dev/null 2>&1 & exit 5")
        report = self.assert_complete("orphan")
        self.assert_exit(report, 5, None, "exited")
        # Many short runs at once: every status must reach its own run, none taken by the reaper.
        for i in range(12):
            self.run_command("quick-%d" % i, "exit %d" % (i + 1))
        self.run_command("signalled", "kill -TERM $$")
        for i in range(12):
            self.assert_exit(self.assert_complete("quick-%d" % i), i + 1, None, "exited")
        self.assert_exit(self.assert_complete("signalled"), None, "SIGTERM", "exited")

        def no_zombies():
            zombies = [p for p in children_of(agent) if (proc_stat(p) or ("",))[0] == "Z"]
            return not zombies

        time.sleep(0.5)
        wait_until(no_zombies, 10, "the agent to reap its orphans")
        self.assertIsNone(unshare.poll())

        self.ctrl.send("shutdown", {})
        self.assertEqual(self.wait_agent(unshare), 0)

    def test_cancel_and_deadman_as_pid1(self):
        marker = self.path("ended")
        self.ctrl.deadman_ms = 1000
        unshare, _ = self.start_as_pid1(deadman=3600, shutdown="command:touch '%s'" % marker)
        self.run_command("r1", "sleep 600 & sleep 600 & echo started; wait")
        self.ctrl.wait_output("r1", "stdout", lambda b: b == b"started\n")
        self.ctrl.send("cancel", {"runId": "r1"})
        self.assert_exit(self.assert_complete("r1"), None, "SIGTERM", "cancelled")
        self.run_command("r2", "sleep 600 & echo started; wait")
        self.ctrl.wait_output("r2", "stdout", lambda b: b == b"started\n")
        self.ctrl.go_silent()
        self.assertEqual(self.wait_agent(unshare, 20), 0)
        self.assertTrue(os.path.exists(marker))
