"""The agent's lean start-up: its small stand-ins for os, json, urllib.parse, threading, signal
and subprocess behave as the modules they replace, and importing the agent loads none of those."""

import importlib.util
import json
import os
import posixpath
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from urllib.parse import quote, urlsplit

from .support import AGENT


def load_agent():
    spec = importlib.util.spec_from_file_location("skyrepl_agent_under_test", AGENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


agent = load_agent()


def logged():
    lines = []
    return lines, lines.append


class StartUpImportTests(unittest.TestCase):
    def test_importing_the_agent_loads_no_module_that_costs_start_up_time(self):
        heavy = ["os", "json", "re", "enum", "socket", "subprocess", "threading", "signal", "urllib.parse",
                 "functools", "collections", "selectors", "encodings.idna"]
        code = (
            "import sys; sys.path.insert(0, %r); import skyrepl_agent; "
            "print(' '.join(m for m in %r if m in sys.modules))" % (os.path.dirname(AGENT), heavy)
        )
        out = subprocess.run([sys.executable, "-S", "-c", code], stdout=subprocess.PIPE, check=True)
        self.assertEqual(out.stdout.decode().strip(), "")


class JsonTests(unittest.TestCase):
    def test_loads_reads_what_json_reads(self):
        texts = ['{"a": 1, "b": [true, false, null], "c": {"d": "e\\u00e9\\n"}}', " 5 ", "\n[1.5e3, -0, -2]\t",
                 '"\\ud83d\\ude00"', "{}", "[]", "NaN", '{"next": 12}']
        for text in texts:
            self.assertEqual(repr(agent.json_loads(text)), repr(json.loads(text)), text)

    def test_loads_refuses_what_json_refuses_with_a_value_error(self):
        for text in ["{not json", "[1,", '"abc', "nul", '{"a":1} x', "", "   ", "{'a': 1}", '{"a" 1}']:
            with self.assertRaises(ValueError, msg=text):
                agent.json_loads(text)

    def test_dumps_writes_what_json_reads_back(self):
        values = [{"runs": ["a", "b"]}, {"runId": "r\"1\\", "exitCode": None, "signal": "SIGKILL", "ok": True},
                  {"n": 12, "x": 0.5, "big": 2 ** 70, "neg": -3, "uni": "\u00e9\U0001f600\x00"}, [], {}, "plain"]
        for value in values:
            text = agent.json_dumps(value)
            self.assertEqual(json.loads(text), value)
            self.assertEqual(text, json.dumps(value, separators=(",", ":")))

    def test_dumps_refuses_what_is_not_json(self):
        for value in [float("nan"), float("inf"), {1: "a"}, object()]:
            with self.assertRaises((ValueError, TypeError, AttributeError), msg=repr(value)):
                agent.json_dumps(value)


class OsTests(unittest.TestCase):
    def test_environ_is_what_os_environ_holds(self):
        # Run in a child with bytes that are not UTF-8 in its environment, which os.environ keeps
        # as surrogates.
        code = (
            "import sys; sys.path.insert(0, %r); import skyrepl_agent as a; import os; "
            "print(a.environ() == dict(os.environ), ascii(a.environ()['SKYREPL_ODD']))" % os.path.dirname(AGENT)
        )
        env = dict(os.environb)
        env[b"SKYREPL_ODD"] = b"caf\xe9 \xc3\xa9"
        out = subprocess.run([sys.executable, "-S", "-c", code], stdout=subprocess.PIPE, env=env, check=True)
        self.assertEqual(out.stdout.decode().strip(), "True 'caf\\udce9 \\xe9'")

    def test_path_helpers_are_those_of_posixpath(self):
        paths = ["", ".", "..", "/", "//", "///", "a", "a/b", "a//b/", "/a/./b/../c", "../../x", "a/../..",
                 "//x/y", "///x/../y", "/..", "a/b/../../..", "./a/", "/tmp/run dir/../w"]
        for path in paths:
            self.assertEqual(agent.normpath(path), posixpath.normpath(path), repr(path))
            if path:
                self.assertEqual(agent.abspath(path), posixpath.abspath(path), repr(path))
        for base in ["", "/", "/work", "/work/", "rel"]:
            for path in ["x", "x/y", "/abs", "", "./z"]:
                self.assertEqual(agent.join(base, path), posixpath.join(base, path), repr((base, path)))

    def test_isdir_is_os_path_isdir(self):
        with tempfile.TemporaryDirectory() as tmp:
            afile = os.path.join(tmp, "f")
            open(afile, "w").close()
            link = os.path.join(tmp, "link")
            os.symlink(tmp, link)
            for path in [tmp, afile, link, os.path.join(tmp, "missing"), "/", "", "a\0b"]:
                self.assertEqual(agent.isdir(path), os.path.isdir(path), repr(path))


class UrlTests(unittest.TestCase):
    def test_parts_are_those_urlsplit_gives(self):
        urls = ["http://127.0.0.1:38301", "https://cp.example.com/base/", "http://Host.Example:80/a/b?x=1#f",
                "http://[::1]:8080/p", "https://user:pw@h.example:443", "HTTP://h", "http://h:/x",
                "http://[fe80::1%25Eth0]:80/"]
        for url in urls:
            mine, theirs = agent.Url(url), urlsplit(url)
            self.assertEqual((mine.scheme, mine.host, mine.port, mine.path),
                             (theirs.scheme, theirs.hostname, theirs.port, theirs.path), url)

    def test_bad_urls_are_refused(self):
        for url in ["ftp://h", "h:80", "http://", "http://:80", "http://h:99999", "http://h:x1", "http://[::1",
                    "http://[::1]x", "http://h\t:80", "http://h:8080\n", " http://h", "http://h/a b"]:
            with self.assertRaises(ValueError, msg=url):
                agent.Url(url)

    def test_quote_component_is_quote_with_nothing_safe(self):
        for text in ["01JX5AB", "a b/c?d&e=f", "\u00e9\U0001f600", "~._-", "%41"]:
            self.assertEqual(agent.quote_component(text), quote(text, safe=""))


class SignalNameTests(unittest.TestCase):
    def test_names_are_those_of_the_signal_module(self):
        def expected(number):
            try:
                return signal.Signals(number).name
            except ValueError:
                if signal.SIGRTMIN < number < signal.SIGRTMAX:
                    return "SIGRTMIN+%d" % (number - signal.SIGRTMIN)
                return "SIG%d" % number

        for number in range(1, 70):
            self.assertEqual(agent.signal_name(number), expected(number), number)


class ThreadingTests(unittest.TestCase):
    def test_a_wait_times_out_unless_notified(self):
        cond = agent.Condition()
        started = time.monotonic()
        with cond:
            self.assertFalse(cond.wait(0.05))
        self.assertGreaterEqual(time.monotonic() - started, 0.04)
        with cond:
            self.assertFalse(cond.wait(0))

    def test_notify_all_wakes_every_waiter(self):
        cond = agent.Condition()
        woken = []
        lines, log = logged()

        def waiter(name):
            with cond:
                woken.append((name, cond.wait(5)))

        for name in ("a", "b", "c"):
            agent.start_thread(log, name, waiter, name)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with cond:
                if len(cond._waiters) == 3:
                    cond.notify_all()
                    break
            time.sleep(0.005)
        while time.monotonic() < deadline and len(woken) < 3:
            time.sleep(0.005)
        self.assertEqual(sorted(woken), [("a", True), ("b", True), ("c", True)])
        self.assertEqual(lines, [])

    def test_event_and_timer(self):
        event = agent.Event()
        self.assertFalse(event.wait(0.01))
        lines, log = logged()
        agent.Timer(log, 0.02, event.set)
        self.assertTrue(event.wait(5))
        self.assertTrue(event.is_set())
        cancelled = agent.Event()
        timer = agent.Timer(log, 0.05, cancelled.set)
        timer.cancel()
        self.assertFalse(cancelled.wait(0.2))
        self.assertEqual(lines, [])

    def test_a_wait_longer_than_one_lock_wait_can_be(self):
        # 3.6e10 s (a run's `maxDurationMs` of 3.6e13, which `repl run --max-duration 10000000h`
        # sends) is more than a lock's acquire takes (OverflowError): it is still waited for, and
        # a notify still ends it.
        lines, log = logged()
        event = agent.Event()
        agent.Timer(log, 0.05, event.set)
        self.assertTrue(event.wait(3.6e10))
        fired = agent.Event()
        for seconds in (3.6e10, 1e305):
            timer = agent.Timer(log, seconds, fired.set)
            time.sleep(0.1)
            timer.cancel()
        self.assertFalse(fired.wait(0.1))
        self.assertEqual(lines, [])

    def test_a_wait_longer_than_a_slice_still_times_out_and_is_woken(self):
        original = agent.WAIT_SLICE
        agent.WAIT_SLICE = 0.01
        self.addCleanup(setattr, agent, "WAIT_SLICE", original)
        cond = agent.Condition()
        started = time.monotonic()
        with cond:
            self.assertFalse(cond.wait(0.1))
        self.assertGreaterEqual(time.monotonic() - started, 0.09)
        lines, log = logged()
        event = agent.Event()
        started = time.monotonic()
        agent.Timer(log, 0.05, event.set)
        self.assertTrue(event.wait(5))
        self.assertLess(time.monotonic() - started, 4)
        self.assertEqual(lines, [])

    def test_a_thread_that_fails_is_logged_by_name(self):
        lines, log = logged()
        done = agent.Event()

        def fail():
            try:
                raise RuntimeError("boom")
            finally:
                done.set()

        agent.start_thread(log, "worker", fail)
        self.assertTrue(done.wait(5))
        deadline = time.monotonic() + 5
        while not lines and time.monotonic() < deadline:
            time.sleep(0.005)
        self.assertEqual(lines, ["internal error in worker: RuntimeError('boom')"])


class RunDirectoryTests(unittest.TestCase):
    """Where a run starts, with the agent in-process: its reports are stopped from the start, so
    nothing is sent and the run's output stays in its stream."""

    def run_pwd(self, workdir):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = agent.parse_args(["--url", "http://127.0.0.1:9", "--token", "t", "--instance", "i", "--workdir", tmp], {})
            runner = agent.Agent(cfg, logged()[1])
            runner.stop_event.set()
            directories = []
            spawn = runner.children.spawn

            def recording(argv, stdout, stderr, env, cwd=None, new_session=False):
                directories.append(cwd)
                return spawn(argv, stdout, stderr, env, cwd, new_session)

            runner.children.spawn = recording
            runner._start_run("r1", "pwd", {}, workdir or tmp, None)
            run = runner.runs["r1"]
            self.assertTrue(run.exited_event.wait(10))
            deadline = time.monotonic() + 10
            while not run.stdout.eof and time.monotonic() < deadline:
                time.sleep(0.01)
            return directories, b"".join(run.stdout.chunks).decode().strip(), tmp

    def test_a_run_in_the_agents_own_directory_inherits_it(self):
        directories, printed, _ = self.run_pwd(os.getcwd())
        self.assertEqual(directories, [None])
        self.assertEqual(printed, os.getcwd())

    def test_a_run_elsewhere_is_started_in_its_directory(self):
        directories, printed, tmp = self.run_pwd(None)
        self.assertEqual(directories, [tmp])
        self.assertEqual(printed, tmp)


class ChildrenTests(unittest.TestCase):
    """Both ways of starting a child: posix_spawn, and subprocess where posix_spawn is missing."""

    def run_child(self, use_posix_spawn, command, cwd=None, new_session=True):
        lines, log = logged()
        children = agent.Children(log, False)
        children.posix_spawn = use_posix_spawn
        out_r, out_w = os.pipe()
        try:
            child = children.spawn(["/bin/sh", "-c", command], out_w, out_w, dict(os.environ), cwd, new_session)
        finally:
            os.close(out_w)
        with os.fdopen(out_r, "rb") as out:
            output = out.read()
        return children.wait(child), output, child

    def test_the_child_gets_its_directory_stdin_session_and_signals(self):
        here = os.getcwd()
        with tempfile.TemporaryDirectory() as workdir:
            for use_posix_spawn in (True, False):
                command = "pwd; cat; cut -d' ' -f6 /proc/$$/stat; grep -E '^SigIgn' /proc/self/status; exit 3"
                (code, sig), output, child = self.run_child(use_posix_spawn, command, workdir)
                lines = output.decode().split("\n")
                self.assertEqual((code, sig), (3, None))
                self.assertEqual(lines[0], os.path.realpath(workdir))
                # stdin is /dev/null (cat ends at once); the child leads its own session.
                self.assertEqual(int(lines[1]), child.pid)
                # SIGPIPE (13) and SIGXFSZ (25), which Python ignores, are back at their default.
                ignored = int(lines[2].split()[1], 16)
                self.assertEqual(ignored & ((1 << 12) | (1 << 24)), 0, lines[2])
                self.assertEqual(os.getcwd(), here)

    def test_only_stdio_is_inherited(self):
        # In a process of its own: _prepare_fds changes the process it runs in.
        code = """
import os, sys
sys.path.insert(0, %r)
import skyrepl_agent as agent
inherited = os.open(os.devnull, os.O_RDONLY)
os.set_inheritable(inherited, True)
agent._prepare_fds()
for use_posix_spawn in (True, False):
    children = agent.Children(print, False)
    children.posix_spawn = use_posix_spawn
    out_r, out_w = os.pipe()
    child = children.spawn(["/bin/sh", "-c", "ls /proc/$$/fd"], out_w, out_w, dict(os.environ), "/", True)
    os.close(out_w)
    with os.fdopen(out_r, "rb") as out:
        print(sorted(int(fd) for fd in out.read().split()))
    children.wait(child)
""" % os.path.dirname(AGENT)
        out = subprocess.run([sys.executable, "-S", "-c", code], stdout=subprocess.PIPE, check=True)
        self.assertEqual(out.stdout.decode().split("\n")[:2], ["[0, 1, 2]", "[0, 1, 2]"])

    def test_a_spawn_into_a_directory_leaves_the_agent_where_it_is(self):
        # Other threads of the agent keep running during a spawn: its own directory never moves.
        here = os.getcwd()
        seen = set()
        stop = agent.Event()

        def watch():
            while not stop.is_set():
                seen.add(os.getcwd())

        lines, log = logged()
        agent.start_thread(log, "watch", watch)
        try:
            with tempfile.TemporaryDirectory() as workdir:
                for _ in range(20):
                    (code, _), output, _ = self.run_child(True, "pwd", workdir)
                    self.assertEqual((code, output.decode().strip()), (0, workdir))
        finally:
            stop.set()
        self.assertEqual(seen, {here})
        self.assertEqual(lines, [])

    def test_signals_and_failures_to_start(self):
        for use_posix_spawn in (True, False):
            (code, sig), _, _ = self.run_child(use_posix_spawn, "kill -TERM $$", new_session=False)
            self.assertEqual((code, sig), (None, "SIGTERM"))
            with self.assertRaises(FileNotFoundError):
                self.run_child(use_posix_spawn, "true", cwd="/nonexistent/dir")
        # A directory that goes away between the check and the child's start: the child says so.
        with tempfile.TemporaryDirectory() as workdir:
            children = agent.Children(logged()[1], False)
            real_isdir = agent.isdir
            agent.isdir = lambda path: True if path == workdir + "/gone" else real_isdir(path)
            try:
                out_r, out_w = os.pipe()
                child = children.spawn(["/bin/sh", "-c", "echo ran"], out_w, out_w, dict(os.environ), workdir + "/gone")
                os.close(out_w)
                with os.fdopen(out_r, "rb") as out:
                    output = out.read().decode()
            finally:
                agent.isdir = real_isdir
            self.assertEqual(children.wait(child), (126, None))
            self.assertIn("gone", output)
            self.assertNotIn("ran", output)


if __name__ == "__main__":
    unittest.main()
