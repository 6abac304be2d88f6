"""Starting the agent as a real process, and looking at processes through /proc."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

from .fake_controller import FakeController

AGENT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "skyrepl_agent.py")
MARK_VARIABLE = "SKYREPL_AGENT_TEST_MARK"


def proc_stat(pid):
    """(state, ppid, pgrp) of a process, or None when it does not exist."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    return fields[0].decode(), int(fields[1]), int(fields[2])


def pid_alive(pid):
    stat = proc_stat(pid)
    # A zombie has ended; whether its parent reaps it is the parent's business (this machine's
    # init does not reap re-parented orphans at all).
    return stat is not None and stat[0] not in ("Z", "X")


def all_pids():
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def group_members(pgid):
    """Live (non-zombie) processes of process group `pgid`."""
    members = []
    for pid in all_pids():
        stat = proc_stat(pid)
        if stat is not None and stat[2] == pgid and stat[0] not in ("Z", "X"):
            members.append(pid)
    return members


def marked_pids(mark):
    """Live processes whose environment carries `mark`: the agent and everything it started."""
    needle = ("%s=%s" % (MARK_VARIABLE, mark)).encode()
    found = []
    for pid in all_pids():
        if pid == os.getpid():
            continue
        try:
            with open("/proc/%d/environ" % pid, "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if needle in environ and pid_alive(pid):
            found.append(pid)
    return found


def wait_until(predicate, timeout=15.0, what="condition", interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class AgentTestCase(unittest.TestCase):
    """Each test gets a fake controller, a scratch directory and a mark in the agent's
    environment; clean-up kills every marked process, whatever the test did."""

    heartbeat = 0.2
    deadman = 8.0

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="skyrepl-agent-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.mark = uuid.uuid4().hex
        self.addCleanup(self._kill_marked)
        self.ctrl = FakeController(heartbeat_ms=int(self.heartbeat * 1000), deadman_ms=int(self.deadman * 1000))
        self.addCleanup(self.ctrl.close)
        self.agents = []

    def _kill_marked(self):
        for agent in self.agents:
            if agent.poll() is None:
                agent.kill()
            agent.wait()
            if agent.stderr is not None:
                agent.stderr.close()
        for _ in range(50):
            pids = marked_pids(self.mark)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.02)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write_files(self, **files):
        """Writes each name=bytes into the test's directory, for a run to read."""
        for name, data in files.items():
            with open(self.path(name), "wb") as f:
                f.write(data)

    def agent_env(self, **extra):
        env = dict(os.environ)
        env.pop("SKYREPL_AGENT_ALLOW_POWEROFF", None)
        env.pop("SKYREPL_AGENT_TOKEN", None)
        env[MARK_VARIABLE] = self.mark
        env.update(extra)
        return env

    def start_agent(self, *extra, **options):
        """Starts the agent against the fake controller. Options: url, token, heartbeat,
        deadman, shutdown, env, argv (replaces the whole argument list), prefix (argv before
        the interpreter, e.g. unshare)."""
        argv = options.get("argv")
        if argv is None:
            argv = [
                "--url", options.get("url", self.ctrl.url),
                "--instance", "repl-test-agent",
                "--heartbeat-interval", str(options.get("heartbeat", self.heartbeat)),
                "--deadman-timeout", str(options.get("deadman", self.deadman)),
                "--log", self.path("agent.log"),
            ]
            token = options.get("token", self.ctrl.token)
            if token is not None:
                argv += ["--token", token]
            if options.get("shutdown"):
                argv += ["--shutdown", options["shutdown"]]
            argv += list(extra)
        cmd = list(options.get("prefix", [])) + [sys.executable, AGENT] + argv
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=options.get("env") or self.agent_env(),
            cwd=self.tmp,
            start_new_session=True,
        )
        self.agents.append(proc)
        return proc

    def run_command(self, run_id, command, env=None, workdir=None, max_ms=None):
        self.ctrl.send(
            "run", {"runId": run_id, "command": command, "env": env or {}, "workdir": workdir, "maxDurationMs": max_ms}
        )

    def wait_agent(self, proc, timeout=15.0):
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("the agent did not exit within %.1fs; log:\n%s" % (timeout, self.agent_log()))

    def read_text(self, name, missing=""):
        """The test directory's file `name`, or `missing` when it cannot be read."""
        try:
            with open(self.path(name)) as f:
                return f.read()
        except OSError:
            return missing

    def agent_log(self):
        return self.read_text("agent.log", "(no log)")

    def assert_group_gone(self, pgid, timeout=5.0):
        wait_until(lambda: not group_members(pgid), timeout, "process group %d to end" % pgid)

    def assert_exit(self, report, exit_code, signal_name, reason):
        self.assertEqual(
            (report["exitCode"], report["signal"], report["reason"]),
            (exit_code, signal_name, reason),
            "exit report %r" % (report,),
        )

    def assert_complete(self, run_id, stdout=None, stderr=None, timeout=15.0):
        """Waits for the run's exit and checks the agent sent it only after every byte."""
        report = self.ctrl.wait_exit(run_id, timeout)
        held = self.ctrl.held_at_exit[run_id]
        self.assertEqual(held, (report["stdoutBytes"], report["stderrBytes"]), "exit arrived before all output")
        if stdout is not None:
            self.assertEqual(self.ctrl.output(run_id, "stdout"), stdout)
        if stderr is not None:
            self.assertEqual(self.ctrl.output(run_id, "stderr"), stderr)
        return report

    def first_line_pid(self, run_id, stream="stdout", timeout=15.0):
        data = self.ctrl.wait_output(run_id, stream, lambda b: b"\n" in b, timeout)
        return int(bytes(data).split(b"\n", 1)[0])
