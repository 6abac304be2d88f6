"""The agent as a real process against a fake controller (docs/agent-protocol.md)."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

from .support import (
    AgentTestCase,
    free_port,
    group_members,
    pid_alive,
    wait_until,
)


class StartupTests(AgentTestCase):
    def test_register_sends_token_protocol_and_identity(self):
        agent = self.start_agent()
        self.ctrl.wait_for(lambda: self.ctrl.registrations, what="a registration")
        headers, body = self.ctrl.registrations[0]
        self.assertEqual(headers.get("Authorization"), "Bearer " + self.ctrl.token)
        self.assertEqual(headers.get("X-SkyREPL-Protocol"), "1")
        self.assertEqual(headers.get("Content-Type"), "application/json")
        payload = json.loads(body.decode("utf-8"))
        self.assertEqual(payload["protocol"], 1)
        self.assertEqual(payload["instance"], "repl-test-agent")
        self.assertEqual(payload["hostname"], socket.gethostname())
        self.assertEqual(payload["pid"], agent.pid)
        self.assertEqual(payload["python"], "%d.%d.%d" % sys.version_info[:3])
        self.assertRegex(payload["agentVersion"], r"^\d+\.\d+\.\d+$")
        # Registered agents open the event stream and heartbeat with the same credentials.
        self.ctrl.wait_for(lambda: self.ctrl.sse_connections >= 1, what="the event stream")
        self.ctrl.wait_for(lambda: self.ctrl.heartbeats, what="a heartbeat")
        self.assertEqual(self.ctrl.heartbeats[0][0].get("Authorization"), "Bearer " + self.ctrl.token)
        self.assertEqual(self.ctrl.heartbeats[0][0].get("X-SkyREPL-Protocol"), "1")
        self.assertIsNone(agent.poll())

    def test_token_may_come_from_the_environment(self):
        self.start_agent(token=None, env=self.agent_env(SKYREPL_AGENT_TOKEN=self.ctrl.token))
        self.ctrl.wait_for(lambda: self.ctrl.registrations, what="a registration")
        self.assertEqual(self.ctrl.registrations[0][0].get("Authorization"), "Bearer " + self.ctrl.token)

    def test_register_is_retried_until_answered(self):
        self.ctrl.register_statuses = [503, 500, 502]
        self.start_agent()
        self.ctrl.wait_for(lambda: self.ctrl.sse_connections >= 1, what="the event stream after registering")
        self.assertEqual(len(self.ctrl.registrations), 4)

    def test_refused_token_exits_3_and_ends_the_instance(self):
        marker = self.path("ended")
        agent = self.start_agent(token="wrong-token", shutdown="command:touch '%s'" % marker)
        self.assertEqual(self.wait_agent(agent), 3)
        self.assertTrue(os.path.exists(marker))
        self.assertEqual(len(self.ctrl.registrations), 0)

    def test_refused_protocol_exits_4(self):
        self.ctrl.register_statuses = [409]
        agent = self.start_agent()
        self.assertEqual(self.wait_agent(agent), 4)

    def test_register_answer_with_another_protocol_exits_4(self):
        self.ctrl.register_answer = (200, {"protocol": 2, "heartbeatIntervalMs": 200, "deadmanTimeoutMs": 5000})
        agent = self.start_agent()
        self.assertEqual(self.wait_agent(agent), 4)

    def test_bad_arguments_exit_2_with_one_line(self):
        base = ["--url", self.ctrl.url, "--token", "t", "--instance", "repl-x"]
        cases = {
            "no arguments": [],
            "no url": ["--token", "t", "--instance", "repl-x"],
            "no instance": ["--url", self.ctrl.url, "--token", "t"],
            "no token": ["--url", self.ctrl.url, "--instance", "repl-x"],
            "unknown flag": base + ["--frobnicate", "1"],
            "positional": base + ["extra"],
            "missing value": base + ["--workdir"],
            "url scheme": ["--url", "ftp://host/", "--token", "t", "--instance", "repl-x"],
            "url port": ["--url", "http://127.0.0.1:notaport", "--token", "t", "--instance", "repl-x"],
            "heartbeat text": base + ["--heartbeat-interval", "soon"],
            "heartbeat zero": base + ["--heartbeat-interval", "0"],
            "deadman negative": base + ["--deadman-timeout", "-5"],
            "deadman nan": base + ["--deadman-timeout", "nan"],
            "shutdown mode": base + ["--shutdown", "reboot"],
            "empty command": base + ["--shutdown", "command:"],
            "workdir": base + ["--workdir", self.path("missing")],
            "log dir": base + ["--log", self.path("missing/agent.log")],
        }
        for name, argv in cases.items():
            with self.subTest(name):
                agent = self.start_agent(argv=argv)
                self.assertEqual(self.wait_agent(agent, 10), 2)
                err = agent.stderr.read().decode()
                self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertEqual(self.ctrl.registrations, [])

    def test_help_exits_0(self):
        proc = subprocess.run(
            [sys.executable, os.path.join(os.path.dirname(os.path.dirname(__file__)), "skyrepl_agent.py"), "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=10,
        )
        self.assertEqual(proc.returncode, 0)
        self.assertIn(b"--url", proc.stdout)

    def test_poweroff_is_refused_without_the_cloud_variable(self):
        for value in (None, "0", "yes"):
            with self.subTest(value=value):
                env = self.agent_env()
                if value is not None:
                    env["SKYREPL_AGENT_ALLOW_POWEROFF"] = value
                # Belt and braces: were the refusal ever broken, no poweroff binary is reachable
                # and the dead-man window is far beyond the test's patience.
                env["PATH"] = self.path("no-such-bin")
                agent = self.start_agent(shutdown="poweroff", deadman=3600, env=env)
                self.assertEqual(self.wait_agent(agent, 10), 2)
                err = agent.stderr.read().decode()
                self.assertEqual(len(err.strip().splitlines()), 1, err)
                self.assertIn("SKYREPL_AGENT_ALLOW_POWEROFF", err)
        self.assertEqual(self.ctrl.registrations, [])


class RunTests(AgentTestCase):
    def test_output_offsets_and_exit(self):
        self.start_agent()
        self.run_command("r1", "printf 'hello\\n'; printf 'oops' >&2; sleep 0.2; printf 'world\\n'")
        report = self.assert_complete("r1", stdout=b"hello\nworld\n", stderr=b"oops")
        self.assert_exit(report, 0, None, "exited")
        self.assertEqual((report["stdoutBytes"], report["stderrBytes"]), (12, 4))
        # Each upload starts where the controller's previous answer said.
        for stream in ("stdout", "stderr"):
            expected = 0
            for run_id, s, offset, length, status in self.ctrl.output_log:
                if (run_id, s) == ("r1", stream):
                    self.assertEqual((offset, status), (expected, 200))
                    expected += length
        self.assertEqual(len(self.ctrl.exit_posts), 1)

    def test_env_workdir_and_stdin(self):
        workdir = self.path("work")
        os.mkdir(workdir)
        env = self.agent_env(FROM_AGENT="inherited", SKYREPL_AGENT_TOKEN=self.ctrl.token, SHADOWED="agent")
        self.start_agent(token=None, env=env)
        self.run_command(
            "r1",
            'printf "%s|%s|%s|%s|%s|" "$GIVEN" "$FROM_AGENT" "$SHADOWED" "${SKYREPL_AGENT_TOKEN-unset}" "$(pwd)";'
            " readlink /proc/$$/fd/0",
            env={"GIVEN": "a value with spaces", "SHADOWED": "run"},
            workdir=workdir,
        )
        self.assert_complete("r1")
        fields = self.ctrl.output("r1", "stdout").decode().rstrip("\n").split("|")
        self.assertEqual(fields, ["a value with spaces", "inherited", "run", "unset", workdir, "/dev/null"])

    def test_default_workdir_is_the_flag(self):
        workdir = self.path("default")
        os.mkdir(workdir)
        self.start_agent("--workdir", workdir)
        self.run_command("r1", "pwd")
        self.assert_complete("r1", stdout=(workdir + "\n").encode())

    def test_non_zero_exit_code(self):
        self.start_agent()
        self.run_command("r1", "echo failing >&2; exit 7")
        report = self.assert_complete("r1", stderr=b"failing\n")
        self.assert_exit(report, 7, None, "exited")

    def test_killed_by_a_signal(self):
        self.start_agent()
        for run_id, sig in (("r-kill", "KILL"), ("r-usr1", "USR1")):
            self.run_command(run_id, "kill -%s $$" % sig)
            report = self.assert_complete(run_id)
            self.assert_exit(report, None, "SIG" + sig, "exited")

    def test_a_run_that_cannot_start_is_reported(self):
        self.start_agent()
        self.run_command("r1", "true", workdir=self.path("does-not-exist"))
        report = self.assert_complete("r1", stdout=b"")
        self.assert_exit(report, 127, None, "exited")
        self.assertIn(b"does-not-exist", self.ctrl.output("r1", "stderr"))
        # The exit says why, for the controller to end the run with.
        self.assertIn("is not a directory", report["refused"])
        self.assertIn("does-not-exist", report["refused"])
        self.assertEqual(self.ctrl.output("r1", "stderr"), ("skyrepl-agent: %s\n" % report["refused"]).encode())

    def test_background_children_do_not_hold_a_run_open(self):
        self.start_agent()
        self.run_command("r1", "sleep 600 & echo $!; echo $$")
        data = self.ctrl.wait_output("r1", "stdout", lambda b: b.count(b"\n") >= 2)
        child, shell = [int(x) for x in bytes(data).split()]
        started = time.monotonic()
        report = self.assert_complete("r1")
        self.assert_exit(report, 0, None, "exited")
        self.assertLess(time.monotonic() - started, 10)
        self.assertFalse(pid_alive(child))
        self.assert_group_gone(shell)

    def test_repeated_run_ids_are_ignored_even_after_a_reconnect(self):
        log = self.path("ran")
        self.start_agent()
        self.run_command("r1", "echo once >> '%s'" % log)
        self.assert_complete("r1")
        self.run_command("r1", "echo twice >> '%s'" % log)
        self.ctrl.drop_event_streams()
        self.ctrl.wait_for(lambda: self.ctrl.sse_connections >= 2, what="a reconnect")
        self.run_command("r2", "true")
        self.assert_complete("r2")
        with open(log) as f:
            self.assertEqual(f.read(), "once\n")
        self.assertEqual([p["runId"] for p in self.ctrl.exit_posts].count("r1"), 1)

    def test_startup_run_starts_without_waiting_for_registration(self):
        # Registration keeps failing: the run given at start-up runs and reports all the same.
        self.ctrl.register_statuses = [503] * 1000
        run = {"runId": "r0", "command": "echo early", "env": {}, "workdir": None, "maxDurationMs": None}
        self.start_agent(env=self.agent_env(SKYREPL_AGENT_RUN=json.dumps(run)))
        report = self.assert_complete("r0", stdout=b"early\n")
        self.assert_exit(report, 0, None, "exited")
        with self.ctrl.cond:
            self.assertTrue(self.ctrl.register_statuses, "registration succeeded before the run was reported")

    def test_startup_run_is_not_started_again_and_stays_out_of_the_runs_environment(self):
        log = self.path("ran")
        run = {
            "runId": "r0",
            "command": 'echo "${SKYREPL_AGENT_RUN-unset} $GIVEN" >> \'%s\'' % log,
            "env": {"GIVEN": "given"},
            "workdir": None,
            "maxDurationMs": None,
        }
        self.start_agent(env=self.agent_env(SKYREPL_AGENT_RUN=json.dumps(run)))
        self.assert_complete("r0")
        # The controller sends the run after registration either way; the agent ignores it.
        self.run_command("r0", run["command"], env=run["env"])
        self.run_command("r1", "true")
        self.assert_complete("r1")
        with open(log) as f:
            self.assertEqual(f.read(), "unset given\n")
        self.assertEqual([p["runId"] for p in self.ctrl.exit_posts].count("r0"), 1)

    def test_a_malformed_startup_run_is_refused_and_a_good_copy_still_runs(self):
        for text in ("{not json", "[1, 2]"):
            with self.subTest(text):
                agent = self.start_agent(env=self.agent_env(SKYREPL_AGENT_RUN=text))
                self.assertEqual(self.wait_agent(agent, 10), 2)
                err = agent.stderr.read().decode()
                self.assertEqual(len(err.strip().splitlines()), 1, err)
                self.assertIn("SKYREPL_AGENT_RUN", err)
        # Well-formed JSON but not a valid run: logged and ignored, and the controller's copy runs.
        bad = {"runId": "r0", "command": 42}
        self.start_agent(env=self.agent_env(SKYREPL_AGENT_RUN=json.dumps(bad)))
        self.run_command("r0", "echo from the event")
        report = self.assert_complete("r0", stdout=b"from the event\n")
        self.assertNotIn("refused", report)
        self.assertEqual([p["runId"] for p in self.ctrl.exit_posts].count("r0"), 1)

    def test_a_malformed_startup_run_whose_event_is_malformed_too_is_refused_once(self):
        run = {"runId": "r0", "command": "true", "env": {}, "workdir": None, "maxDurationMs": -1}
        self.start_agent(env=self.agent_env(SKYREPL_AGENT_RUN=json.dumps(run)))
        self.ctrl.send("run", run)
        report = self.assert_complete("r0")
        self.assertEqual(report["refused"], "maxDurationMs must be a positive number")
        self.run_command("r1", "true")
        self.assert_complete("r1")
        self.assertEqual([p["runId"] for p in self.ctrl.exit_posts].count("r0"), 1)

    def test_a_malformed_run_is_refused_with_an_exit_that_says_why(self):
        # Ignored, such a run never ended: the controller waited for it forever.
        ran = self.path("ran")
        cases = [
            ("r-duration", {"maxDurationMs": -5}, "maxDurationMs must be a positive number"),
            ("r-duration-text", {"maxDurationMs": "600000"}, "maxDurationMs must be a positive number"),
            ("r-command", {"command": 42}, "command must be a string"),
            ("r-env", {"env": {"A": 1}}, "env must be an object of strings"),
            ("r-workdir", {"workdir": 7}, "workdir must be a string"),
        ]
        self.start_agent()
        for run_id, spoiled, why in cases:
            run = {"runId": run_id, "command": "echo ran > '%s'" % ran, "env": {}, "workdir": None, "maxDurationMs": None}
            run.update(spoiled)
            self.ctrl.send("run", run)
        for run_id, _, why in cases:
            with self.subTest(run_id):
                report = self.assert_complete(
                    run_id, stdout=b"", stderr=("skyrepl-agent: refused the run: %s\n" % why).encode()
                )
                self.assert_exit(report, 127, None, "exited")
                self.assertEqual(report["refused"], why)
        # A copy sent again (the controller resends after a reconnect) is not reported again.
        self.run_command("r-duration", "true", max_ms=-5)
        self.run_command("r-ok", "true")
        self.assertNotIn("refused", self.assert_complete("r-ok"))
        self.assertEqual([p["runId"] for p in self.ctrl.exit_posts].count("r-duration"), 1)
        self.assertFalse(os.path.exists(ran))

    def test_malformed_and_unknown_events_are_ignored_and_malformed_runs_refused(self):
        agent = self.start_agent()
        self.ctrl.send_raw("event: run\ndata: {not json\n\n")
        self.ctrl.send_raw("event: run\ndata: [1, 2]\n\n")
        self.ctrl.send_raw(b"event: run\ndata: \xff\xfe\n\n")
        self.ctrl.send_raw("event: reboot\ndata: {}\n\n")
        self.ctrl.send_raw("data: {\"runId\": \"no-event-name\"}\n\n")
        self.ctrl.send_raw("event: run\ndata: {\"runId\": \"r-bad\", \"command\": 42}\n\n")
        self.ctrl.send_raw("event: run\ndata: {\"runId\": \"r-bad-env\", \"command\": \"true\", \"env\": {\"A\": 1}}\n\n")
        self.ctrl.send_raw("event: run\ndata: {\"command\": \"true\"}\n\n")
        self.ctrl.send_raw("event: cancel\ndata: {\"runId\": \"never-started\"}\n\n")
        self.ctrl.send_raw("event: cancel\ndata: {}\n\n")
        self.ctrl.send_raw("retry: 10\nid: 7\nbogus-field\n\n")
        # A multi-line data field joins with newlines, which JSON accepts between tokens.
        self.ctrl.send_raw('event: run\ndata: {"runId": "r-ok",\ndata: "command": "echo fine",\r\ndata: "env": {}}\n\n')
        self.assert_complete("r-ok", stdout=b"fine\n")
        self.assertIsNone(agent.poll())
        # Only a run whose runId could be read can be answered; the rest are in the agent's log.
        for run_id in ("r-bad", "r-bad-env"):
            self.assertIn("refused", self.assert_complete(run_id))
        self.assertEqual(sorted(self.ctrl.exits), ["r-bad", "r-bad-env", "r-ok"])
        self.assertIn("ignoring run event without a runId", self.agent_log())

    def test_heartbeats_list_the_runs_still_going(self):
        self.start_agent()
        self.run_command("r1", "sleep 1")
        self.ctrl.wait_for(
            lambda: ["r1"] in [body["runs"] for _, body in self.ctrl.heartbeats], what="a heartbeat with r1"
        )
        self.assert_complete("r1")
        seen = len(self.ctrl.heartbeats)
        self.ctrl.wait_for(
            lambda: [] in [body["runs"] for _, body in self.ctrl.heartbeats[seen:]], what="a heartbeat without r1"
        )


class KillTests(AgentTestCase):
    def test_max_duration_times_out_and_ends_the_group(self):
        self.start_agent()
        started = time.monotonic()
        self.run_command("r1", "sleep 600 & echo $$; wait", max_ms=500)
        shell = self.first_line_pid("r1")
        report = self.assert_complete("r1")
        self.assertGreaterEqual(time.monotonic() - started, 0.5)
        self.assert_exit(report, None, "SIGTERM", "timed_out")
        self.assert_group_gone(shell)

    def test_a_max_duration_too_long_for_one_timer_wait_is_kept(self):
        # `repl run --max-duration 10000000h` sends 3.6e13 ms; the timer used to die of it
        # (OverflowError), leaving the run without the agent's time limit. JSON's integers have
        # no limit: one too large for a float is as long a limit, not an error.
        self.start_agent()
        shells = {}
        for run_id, max_ms in (("r1", 3.6e13), ("r2", 10 ** 400)):
            self.run_command(run_id, "sleep 600 & echo $$; wait", max_ms=max_ms)
            shells[run_id] = self.first_line_pid(run_id)
        time.sleep(0.5)
        self.assertNotIn("error", self.agent_log())
        for run_id, shell in shells.items():
            self.ctrl.send("cancel", {"runId": run_id})
            self.assert_exit(self.assert_complete(run_id), None, "SIGTERM", "cancelled")
            self.assert_group_gone(shell)

    def test_cancel_ends_the_whole_group_including_grandchildren(self):
        self.start_agent()
        # One grandchild ignores SIGTERM (the ignored disposition survives exec), so only the
        # SIGKILL two seconds later can end it.
        self.run_command(
            "r1",
            "sh -c 'trap \"\" TERM; sleep 600' & echo $!; sleep 600 & echo $!; sleep 600 & echo $!; echo $$; wait",
        )
        data = self.ctrl.wait_output("r1", "stdout", lambda b: b.count(b"\n") >= 4)
        pids = [int(x) for x in bytes(data).split()]
        shell = pids[-1]
        wait_until(lambda: len(group_members(shell)) >= 5, what="the grandchildren to start")
        members = group_members(shell)
        self.ctrl.send("cancel", {"runId": "r1"})
        report = self.assert_complete("r1")
        self.assert_exit(report, None, "SIGTERM", "cancelled")
        self.assert_group_gone(shell)
        for pid in members + pids:
            self.assertFalse(pid_alive(pid), "pid %d survived the cancel" % pid)

    def test_cancel_of_a_finished_run_changes_nothing(self):
        self.start_agent()
        self.run_command("r1", "exit 3")
        report = self.assert_complete("r1")
        self.ctrl.send("cancel", {"runId": "r1"})
        self.run_command("r2", "true")
        self.assert_complete("r2")
        self.assert_exit(report, 3, None, "exited")
        self.assertEqual([p["runId"] for p in self.ctrl.exit_posts].count("r1"), 1)


class UploadTests(AgentTestCase):
    def test_409_makes_the_agent_resend_from_next(self):
        go = self.path("go")
        state = {"conflicts": 0}

        def hook(ctrl, run_id, stream, offset, data, store):
            if stream == "stdout" and offset > 0 and state["conflicts"] == 0:
                # The controller lost the tail of what it acknowledged (a crash before its
                # store caught up): it holds 5 bytes now, so the chunk at `offset` is a gap.
                state["conflicts"] += 1
                with ctrl.cond:
                    del ctrl.outputs[(run_id, stream)][5:]
            answer = store()
            if stream == "stdout" and offset == 0:
                open(go, "w").close()
            return answer

        self.ctrl.output_hook = hook
        self.start_agent()
        self.run_command("r1", "printf 'first-part\\n'; while [ ! -e '%s' ]; do sleep 0.02; done; printf 'second-part\\n'" % go)
        report = self.assert_complete("r1", stdout=b"first-part\nsecond-part\n")
        self.assert_exit(report, 0, None, "exited")
        stdout = [(o, s) for r, st, o, n, s in self.ctrl.output_log if st == "stdout"]
        self.assertEqual(stdout, [(0, 200), (11, 409), (5, 200)])

    def test_failed_answers_are_retried_without_duplicating_bytes(self):
        state = {"stdout": 0, "stderr": 0}

        def hook(ctrl, run_id, stream, offset, data, store):
            state[stream] += 1
            if state[stream] == 1:
                if stream == "stdout":
                    # Stored, but the answer is lost: the agent must resend, the store skips.
                    store()
                return 500, {"error": "try again"}
            return store()

        self.ctrl.output_hook = hook
        self.start_agent()
        self.run_command("r1", "printf 'to stdout'; printf 'to stderr' >&2")
        report = self.assert_complete("r1", stdout=b"to stdout", stderr=b"to stderr")
        self.assert_exit(report, 0, None, "exited")
        for stream in ("stdout", "stderr"):
            log = [(o, s) for r, st, o, n, s in self.ctrl.output_log if st == stream]
            self.assertEqual(log, [(0, 500), (0, 200)], stream)

    def test_uploads_grow_to_the_size_the_register_answer_names(self):
        big = os.urandom(24 * 1024 * 1024)
        self.write_files(big=big)
        limit = 1024 * 1024
        self.ctrl.register_answer = (
            200,
            {"protocol": 1, "heartbeatIntervalMs": self.ctrl.heartbeat_ms, "deadmanTimeoutMs": self.ctrl.deadman_ms, "maxOutputBytes": limit},
        )
        self.start_agent()
        self.run_command("r1", "cat big", workdir=self.tmp)
        report = self.assert_complete("r1", timeout=60)
        self.assert_exit(report, 0, None, "exited")
        self.assertEqual(hashlib.sha256(self.ctrl.output("r1", "stdout")).hexdigest(), hashlib.sha256(big).hexdigest())
        sizes = [n for _, st, _, n, _ in self.ctrl.output_log if st == "stdout"]
        self.assertTrue(all(n <= limit for n in sizes), max(sizes))
        # Reads pile up while a request is in flight, so some uploads carry more than one read.
        self.assertGreater(max(sizes), 256 * 1024)

    def test_a_register_answer_outside_the_bounds_keeps_256_kib_uploads(self):
        self.ctrl.register_answer = (
            200,
            {"protocol": 1, "heartbeatIntervalMs": self.ctrl.heartbeat_ms, "deadmanTimeoutMs": self.ctrl.deadman_ms, "maxOutputBytes": 1 << 30},
        )
        data = os.urandom(8 * 1024 * 1024)
        self.write_files(data=data)
        self.start_agent()
        self.run_command("r1", "cat data", workdir=self.tmp)
        self.assert_complete("r1", timeout=60)
        self.assertEqual(self.ctrl.output("r1", "stdout"), data)
        self.assertTrue(all(n <= 256 * 1024 for _, _, _, n, _ in self.ctrl.output_log))

    def test_output_that_compresses_is_uploaded_deflated_when_the_controller_takes_it(self):
        self.ctrl.output_encodings = ["deflate"]
        text = b"".join(b"line %d of a chatty log\n" % i for i in range(150000))
        noise = os.urandom(2 * 1024 * 1024)
        self.write_files(text=text, noise=noise)
        self.start_agent()
        self.run_command("r1", "cat text; cat noise >&2", workdir=self.tmp)
        report = self.assert_complete("r1", timeout=60)
        self.assert_exit(report, 0, None, "exited")
        self.assertEqual(self.ctrl.output("r1", "stdout"), text)
        self.assertEqual(self.ctrl.output("r1", "stderr"), noise)
        stdout = [(enc, wire, raw) for st, enc, wire, raw in self.ctrl.wire_log if st == "stdout"]
        stderr = [(enc, wire, raw) for st, enc, wire, raw in self.ctrl.wire_log if st == "stderr"]
        # Every upload large enough to pay went compressed, and text shrinks several times over.
        self.assertTrue(all(enc == "deflate" for enc, _, raw in stdout if raw >= 4096), stdout)
        self.assertLess(sum(wire for _, wire, _ in stdout) * 4, len(text))
        # Random bytes do not compress: they go as they are.
        self.assertTrue(all(enc is None and wire == raw for enc, wire, raw in stderr), stderr)

    def upload_encodings(self, listed):
        """The encodings of the uploads that were large enough to compress, with `listed` as
        the register answer's outputEncodings."""
        text = b"".join(b"line %d of a chatty log\n" % i for i in range(40000))
        self.write_files(text=text)
        self.ctrl.output_encodings = listed
        self.start_agent()
        self.run_command("r1", "cat text", workdir=self.tmp)
        self.assert_complete("r1", stdout=text, timeout=60)
        return set(enc for _, enc, _, raw in self.ctrl.wire_log if raw >= 4096)

    def test_uploads_use_the_first_listed_encoding_the_agent_knows(self):
        self.assertEqual(self.upload_encodings(["br", 7, ["gzip"], "gzip", "deflate"]), {"gzip"})

    def test_uploads_follow_the_controllers_order_of_encodings(self):
        self.assertEqual(self.upload_encodings(["deflate", "gzip"]), {"deflate"})

    def test_uploads_stay_plain_when_the_register_answer_lists_none(self):
        # A controller compressing for an agent on its own machine answers with an empty list.
        self.assertEqual(self.upload_encodings([]), {None})

    def test_uploads_stay_plain_when_the_register_answer_names_no_encodings(self):
        self.write_files(text=b"the same line again\n" * 50000)
        self.start_agent()
        self.run_command("r1", "cat text", workdir=self.tmp)
        self.assert_complete("r1", stdout=b"the same line again\n" * 50000, timeout=60)
        self.assertTrue(self.ctrl.wire_log)
        self.assertTrue(all(enc is None and wire == raw for _, enc, wire, raw in self.ctrl.wire_log))

    def test_large_output_arrives_byte_exact(self):
        big = os.urandom(20 * 1024 * 1024)
        small = os.urandom(3 * 1024 * 1024 + 17)
        self.write_files(big=big, small=small)
        self.start_agent()
        started = time.monotonic()
        self.run_command("r1", "cat big; cat small >&2", workdir=self.tmp)
        report = self.assert_complete("r1", timeout=60)
        elapsed = time.monotonic() - started
        self.assert_exit(report, 0, None, "exited")
        self.assertEqual((report["stdoutBytes"], report["stderrBytes"]), (len(big), len(small)))
        self.assertEqual(hashlib.sha256(self.ctrl.output("r1", "stdout")).hexdigest(), hashlib.sha256(big).hexdigest())
        self.assertEqual(hashlib.sha256(self.ctrl.output("r1", "stderr")).hexdigest(), hashlib.sha256(small).hexdigest())
        self.assertTrue(all(n <= 256 * 1024 for _, _, _, n, _ in self.ctrl.output_log))
        self.assertLess(elapsed, 60)


class EndingTests(AgentTestCase):
    def test_deadman_kills_the_run_and_ends_the_instance(self):
        marker = self.path("ended")
        # The register answer's window (1 s) overrides the flag's hour.
        self.ctrl.deadman_ms = 1000
        agent = self.start_agent(deadman=3600, shutdown="command:touch '%s'" % marker)
        self.run_command("r1", "sleep 600 & echo $$; wait")
        shell = self.first_line_pid("r1")
        self.ctrl.go_silent()
        silent_at = time.monotonic()
        wait_until(lambda: os.path.exists(marker), 20, "the shutdown command")
        elapsed = time.monotonic() - silent_at
        self.assertEqual(self.wait_agent(agent), 0)
        # Pings stop at the silence, so the window starts at most one ping interval before it.
        self.assertGreaterEqual(elapsed, 0.8)
        self.assertLess(elapsed, 1.0 + 2.0 + 10)
        self.assertFalse(pid_alive(shell))
        self.assertEqual(group_members(shell), [])
        self.assertIn("dead-man", self.agent_log())

    def test_deadman_when_the_controller_never_answers(self):
        marker = self.path("ended")
        url = "http://127.0.0.1:%d" % free_port()
        agent = self.start_agent(url=url, deadman=1, shutdown="command:touch '%s'" % marker)
        self.assertEqual(self.wait_agent(agent), 0)
        self.assertTrue(os.path.exists(marker))

    def test_event_stream_pings_keep_the_agent_alive(self):
        self.ctrl.deadman_ms = 1000
        self.ctrl.heartbeat_status = 500
        agent = self.start_agent(deadman=3600)
        self.ctrl.wait_for(lambda: len(self.ctrl.heartbeats) >= 2, what="failing heartbeats")
        time.sleep(3)
        self.assertIsNone(agent.poll(), self.agent_log())
        self.run_command("r1", "echo still here")
        self.assert_complete("r1", stdout=b"still here\n")

    def test_a_heartbeat_interval_too_long_is_cut_and_heartbeats_go_on(self):
        # 1e308 ms used to kill the heartbeat thread and the boot thread (and with it the event
        # stream) with an OverflowError: the agent fell silent and the dead-man switch ended it.
        self.ctrl.register_answer = (200, {"protocol": 1, "heartbeatIntervalMs": 1e308, "deadmanTimeoutMs": 1000})
        agent = self.start_agent(deadman=3600)
        self.ctrl.wait_for(lambda: len(self.ctrl.heartbeats) >= 6, 10, "heartbeats every half second")
        self.assertIsNone(agent.poll(), self.agent_log())
        self.run_command("r1", "echo still here")
        self.assert_complete("r1", stdout=b"still here\n")
        self.assertNotIn("internal error", self.agent_log())

    def test_shutdown_event_ends_runs_and_the_agent(self):
        marker = self.path("ended")
        agent = self.start_agent(shutdown="command:touch '%s'" % marker)
        self.run_command("r1", "sleep 600 & echo $$; wait")
        shell = self.first_line_pid("r1")
        self.ctrl.send("shutdown", {})
        self.assertEqual(self.wait_agent(agent), 0)
        self.assertTrue(os.path.exists(marker))
        self.assert_group_gone(shell)
        report = self.assert_complete("r1")
        self.assertEqual(report["reason"], "cancelled")

    def test_token_revoked_mid_run(self):
        marker = self.path("ended")
        agent = self.start_agent(shutdown="command:touch '%s'" % marker)
        self.run_command("r1", "sleep 600 & echo $$; wait")
        shell = self.first_line_pid("r1")
        self.ctrl.revoke()
        self.assertEqual(self.wait_agent(agent), 3)
        self.assertTrue(os.path.exists(marker))
        self.assert_group_gone(shell)

    def test_an_idle_agent_sleeps_until_a_signal(self):
        # Its main thread only turns signals into an ending: it used to wake ten times a second
        # for the instance's whole life to look for one.
        agent = self.start_agent()
        self.run_command("r1", "echo started; sleep 600")
        wait_until(lambda: b"started" in self.ctrl.output("r1", "stdout"), 10.0, "the run to start")

        def main_thread_wakes():
            with open("/proc/%d/task/%d/status" % (agent.pid, agent.pid)) as f:
                return int(next(l for l in f if l.startswith("voluntary_ctxt_switches")).split()[1])

        before = main_thread_wakes()
        time.sleep(2.0)
        # The five-second backstop may fall in the window; ten a second would be twenty.
        self.assertLessEqual(main_thread_wakes() - before, 2)
        started = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_agent(agent), 0)
        self.assertLess(time.monotonic() - started, 5.0)

    def test_sigterm_ends_runs_and_the_agent_without_the_shutdown_action(self):
        marker = self.path("ended")
        agent = self.start_agent(shutdown="command:touch '%s'" % marker)
        self.run_command("r1", "sleep 600 & echo $$; wait")
        shell = self.first_line_pid("r1")
        agent.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_agent(agent), 0)
        self.assert_group_gone(shell)
        self.assertFalse(os.path.exists(marker))
