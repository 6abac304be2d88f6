"""The fork server (skyrepl_fork_server.py), which the local provider forks sandboxes from: each
forked sandbox must carry its own variables in /proc, run the agent as an exec'd one does, and
look to /proc as a sandbox exec'd through unshare does."""

import json
import os
import select
import subprocess
import sys
import time
import unittest

from .support import AGENT, MARK_VARIABLE, AgentTestCase, pid_alive, proc_stat, wait_until
from .test_pid1 import children_of, namespaces_available

ROOM = 16 * 1024
FORK_SERVER = os.path.join(os.path.dirname(AGENT), "skyrepl_fork_server.py")


def comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().strip()


def environ_of(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return [entry for entry in f.read().split(b"\0") if entry]


class ForkServerTests(AgentTestCase):
    def start_server(self, room=ROOM, agent=AGENT):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SKYREPL_FORK_SERVER_ROOM": "0" * room}
        server = subprocess.Popen(
            [sys.executable, "-S", FORK_SERVER, "--agent", agent],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        self.addCleanup(self._end_server, server)
        self.pending = b""
        ready = self.read_line(server)
        self.assertEqual(ready["ready"], True)
        # Its room is its whole initial environment, PATH and the variable's name included.
        self.assertGreaterEqual(ready["room"], room)
        return server

    def _end_server(self, server):
        if server.poll() is None:
            server.kill()
        server.wait()
        for stream in (server.stdin, server.stdout, server.stderr):
            stream.close()

    def read_line(self, server, timeout=10.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([server.stdout], [], [], left)[0]:
                raise AssertionError("no line from the fork server within %.1fs" % timeout)
            data = os.read(server.stdout.fileno(), 65536)
            if not data:
                raise AssertionError("the fork server ended: %r" % server.stderr.read())
            self.pending += data
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def request(self, server, request_id, namespaces="none", argv=None, env=None, cwd=None, console=None):
        request = {
            "name": "repl-test-forked",
            "argv": argv if argv is not None else [
                "--url", self.ctrl.url,
                "--token", self.ctrl.token,
                "--instance", "repl-test-forked",
                "--heartbeat-interval", str(self.heartbeat),
                "--deadman-timeout", str(self.deadman),
                "--log", self.path("agent.log"),
            ],
            "env": env if env is not None else {"PATH": "/usr/bin:/bin", MARK_VARIABLE: self.mark, "SKYREPL_INSTANCE": "repl-test-forked"},
            "cwd": cwd or self.tmp,
            "console": console or self.path("console.log"),
            "namespaces": namespaces,
        }
        server.stdin.write(("%d %s\n" % (request_id, json.dumps(request))).encode())
        server.stdin.flush()
        return self.read_line(server)

    def console(self):
        return self.read_text("console.log")

    def test_a_forked_agent_registers_and_runs_with_its_own_variables_where_proc_reads_them(self):
        server = self.start_server()
        # The fork makes its directory, parents too, and the console log goes beside it.
        answer = self.request(server, 1, cwd=self.path("instance/work"), console=self.path("instance/console.log"))
        self.assertEqual(answer["id"], 1)
        pid = answer["pid"]
        self.ctrl.wait_for(lambda: self.ctrl.registrations, what="a registration")
        self.assertEqual(json.loads(self.ctrl.registrations[0][1].decode())["pid"], pid)
        variables = environ_of(pid)
        self.assertIn(b"SKYREPL_INSTANCE=repl-test-forked", variables)
        self.assertFalse([v for v in variables if v.startswith(b"SKYREPL_FORK_SERVER_ROOM")], variables)
        self.assertEqual(comm(pid), "skyrepl-sandbox")
        state, ppid, pgid = proc_stat(pid)
        # Its own session, like a process exec'd detached.
        self.assertEqual(pgid, pid)
        self.run_command("r1", 'echo "$SKYREPL_INSTANCE in $PWD"; test -z "$SKYREPL_FORK_SERVER_ROOM"')
        self.assert_complete("r1", stdout=("repl-test-forked in %s\n" % self.path("instance/work")).encode())
        self.assertEqual(os.stat(self.path("instance")).st_mode & 0o777, 0o700)
        self.assertTrue(os.path.exists(self.path("instance/console.log")))

    def test_runs_the_agent_from_a_compiled_copy(self):
        import py_compile

        compiled = self.path("agent.pyc")
        py_compile.compile(AGENT, cfile=compiled, doraise=True)
        server = self.start_server(agent=compiled)
        self.request(server, 1)
        self.ctrl.wait_for(lambda: self.ctrl.registrations, what="a registration")

    def test_without_an_agent_it_says_how_to_start_it(self):
        done = subprocess.run([sys.executable, "-S", FORK_SERVER], stderr=subprocess.PIPE)
        self.assertEqual((done.returncode, done.stderr), (2, b"usage: skyrepl_fork_server.py --agent AGENT\n"))

    def test_a_malformed_request_is_answered_with_an_error_and_the_next_is_served(self):
        server = self.start_server()
        server.stdin.write(b"{not an id\n")
        server.stdin.flush()
        self.assertEqual(self.read_line(server), {"error": "a request is `ID JSON` on one line"})
        # A request whose JSON is bad is the sandbox's to report (on the server's stderr: it has
        # no console of its own yet), for the server decodes none.
        server.stdin.write(b"7 {not json\n")
        server.stdin.flush()
        self.assertEqual(self.read_line(server)["id"], 7)
        said = []

        def complained():
            if select.select([server.stderr], [], [], 0)[0]:
                said.append(os.read(server.stderr.fileno(), 65536))
            return b"cannot start the sandbox: JSONDecodeError" in b"".join(said)

        wait_until(complained, 10, "the sandbox's complaint")
        answer = self.request(server, 2, argv=["--help"])
        self.assertEqual(answer["id"], 2)
        wait_until(lambda: "usage:" in self.console(), 10, "the forked agent's usage text")

    def test_a_request_split_across_reads_and_one_too_long_are_each_handled(self):
        server = self.start_server()
        line = ("1 %s\n" % json.dumps({"name": "x", "argv": ["--help"], "env": {MARK_VARIABLE: self.mark},
                                        "cwd": self.tmp, "console": self.path("console.log"), "namespaces": "none"})).encode()
        server.stdin.write(line[:10])
        server.stdin.flush()
        time.sleep(0.1)
        server.stdin.write(line[10:])
        server.stdin.flush()
        self.assertEqual(self.read_line(server)["id"], 1)
        server.stdin.write(b"2 " + b"x" * (1 << 20) + b"\n")
        server.stdin.flush()
        self.assertEqual(self.read_line(server), {"error": "a request longer than 1048576 bytes"})
        self.assertEqual(self.request(server, 3, argv=["--help"])["id"], 3)

    def test_the_server_keeps_no_request_in_its_memory(self):
        # Every later sandbox inherits the server's memory: a token must not linger in it.
        server = self.start_server()
        token = "secret-%s" % self.mark
        self.request(server, 1, argv=["--help"], env={MARK_VARIABLE: self.mark, "SKYREPL_AGENT_TOKEN": token})
        wait_until(lambda: "usage:" in self.console(), 10, "the forked agent's usage text")
        found = []
        with open("/proc/%d/maps" % server.pid) as maps, open("/proc/%d/mem" % server.pid, "rb", 0) as mem:
            for entry in maps:
                fields = entry.split()
                if "w" not in fields[1]:
                    continue
                low, high = (int(x, 16) for x in fields[0].split("-"))
                try:
                    mem.seek(low)
                    if token.encode() in mem.read(high - low):
                        found.append(entry.strip())
                except (OSError, ValueError, OverflowError):
                    pass
        self.assertEqual(found, [])

    def test_an_environment_larger_than_the_room_ends_the_sandbox_with_a_reason(self):
        server = self.start_server(room=1024)
        answer = self.request(server, 1, env={MARK_VARIABLE: self.mark, "BIG": "x" * 4096})
        wait_until(lambda: "does not fit" in self.console(), 10, "the reason in the console log")
        wait_until(lambda: not pid_alive(answer["pid"]), 10, "the sandbox to end")

    def test_the_server_ends_when_its_stdin_does_and_its_sandboxes_run_on(self):
        server = self.start_server()
        pid = self.request(server, 1)["pid"]
        server.stdin.close()
        self.assertEqual(server.wait(10), 0)
        self.ctrl.wait_for(lambda: self.ctrl.registrations, what="a registration")
        self.assertTrue(pid_alive(pid))

    def test_a_server_told_to_end_waits_for_a_sandbox_not_yet_past_its_check(self):
        # The controller may exit right after a spawn returned; the sandbox, not yet past its
        # check of its server, would then end unstarted. Its console is a FIFO here, so it waits
        # in open() (before the check) until the test reads.
        server = self.start_server()
        fifo = self.path("console.fifo")
        os.mkfifo(fifo)
        self.request(server, 1, argv=["--help"], console=fifo)
        server.stdin.close()
        time.sleep(0.3)
        self.assertIsNone(server.poll(), "the server ended before its sandbox was past its check")
        with open(fifo, "rb") as console:
            self.assertEqual(server.wait(10), 0)
            self.assertIn(b"usage:", console.read())

    def test_the_root_ends_as_its_init_did(self):
        # `_wait_and_pass_on` in a process of its own: an exit status, then a signal.
        code = (
            "import sys, posix, signal; sys.path.insert(0, %r); import skyrepl_fork_server as a\n"
            "pid = posix.fork()\n"
            "if pid == 0:\n"
            "    posix.kill(posix.getpid(), signal.SIGTERM) if sys.argv[1] == 'signal' else posix._exit(7)\n"
            "a._wait_and_pass_on(pid)\n" % os.path.dirname(AGENT)
        )
        self.assertEqual(subprocess.run([sys.executable, "-c", code, "exit"]).returncode, 7)
        self.assertEqual(subprocess.run([sys.executable, "-c", code, "signal"]).returncode, -15)

    def test_a_root_whose_server_is_gone_before_it_carries_its_variables_does_not_start(self):
        # The controller takes a server that ended mid-request to have started nothing.
        code = (
            "import sys; sys.path.insert(0, %r); import skyrepl_fork_server as a\n"
            "a._enter_sandbox(a._Libc(), {'console': %r, 'cwd': %r, 'env': {}, 'namespaces': 'none',"
            " 'name': 'x'}, server_pid=-1, started=1000)\n"
            "print('started')\n" % (os.path.dirname(AGENT), self.path("console.log"), self.tmp)
        )
        done = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE)
        self.assertEqual((done.returncode, done.stdout, self.console()), (1, b"", ""))

    @unittest.skipUnless(namespaces_available(), "needs root and unshare with pid namespaces")
    def test_a_namespace_sandbox_is_a_root_outside_and_the_agent_as_pid_1_inside(self):
        server = self.start_server()
        root = self.request(server, 1, namespaces="root")["pid"]
        self.ctrl.wait_for(lambda: self.ctrl.registrations, what="a registration")
        registration = json.loads(self.ctrl.registrations[0][1].decode())
        self.assertEqual((registration["pid"], registration["hostname"]), (1, "repl-test-forked"))
        init = wait_until(lambda: children_of(root), 10, "the namespace's init")
        self.assertEqual(len(init), 1)
        with open("/proc/%d/status" % init[0]) as f:
            nspid = [line.split()[1:] for line in f if line.startswith("NSpid:")][0]
        self.assertEqual(nspid, [str(init[0]), "1"])
        self.assertEqual((comm(root), comm(init[0])), ("skyrepl-sandbox", "skyrepl-agent"))
        self.assertIn(b"SKYREPL_INSTANCE=repl-test-forked", environ_of(init[0]))
        # Killing the root ends the init, as unshare's --kill-child has it.
        os.kill(root, 9)
        wait_until(lambda: not pid_alive(init[0]), 10, "the init to end with its root")
