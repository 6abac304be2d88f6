"""The heartbeat interval and dead-man window the agent keeps, in-process: whatever the flags or
the register answer ask for, the dead-man switch fires within a bounded time of the controller
going silent, and heartbeats come at least twice in its window."""

import json
import os
import tempfile
import time
import unittest

from .test_lean import agent, logged

# The longest dead-man window the agent keeps (docs/agent-protocol.md).
DAY = 24 * 3600.0


class TimingBoundsTests(unittest.TestCase):
    def make_agent(self, *flags):
        tmp = tempfile.mkdtemp(prefix="skyrepl-timings-")
        self.addCleanup(os.rmdir, tmp)
        argv = ["--url", "http://127.0.0.1:9", "--token", "t", "--instance", "i", "--workdir", tmp]
        cfg = agent.parse_args(argv + list(flags), {})
        lines, log = logged()
        return agent.Agent(cfg, log), lines

    def register(self, answer, *flags):
        """An agent (started with `flags`) after a register answer of `answer`, and its log."""
        a, lines = self.make_agent(*flags)
        body = dict({"protocol": 1}, **answer)
        self.assertTrue(a._registered(json.dumps(body).encode("utf-8")))
        return a, lines

    def test_timings_within_the_bounds_are_kept_as_sent(self):
        for answer, kept in (
            ({"heartbeatIntervalMs": 200, "deadmanTimeoutMs": 5000}, (0.2, 5.0)),
            ({"heartbeatIntervalMs": 2500, "deadmanTimeoutMs": 5000}, (2.5, 5.0)),
            ({"heartbeatIntervalMs": 10, "deadmanTimeoutMs": DAY * 1000}, (0.01, DAY)),
        ):
            a, lines = self.register(answer)
            self.assertEqual((a.heartbeat_interval, a.deadman_timeout), kept)
            # Only the line that says it registered, with the timings as plain numbers (a day
            # was "8.64e+04s").
            self.assertEqual(len(lines), 1, lines)
            self.assertIn("heartbeat every %gs, dead-man after %ds" % (kept[0], kept[1]), lines[0])

    def test_a_dead_man_window_too_long_is_cut_to_the_maximum(self):
        # 1e308 ms turned the switch off: an agent whose controller went silent lived forever.
        for deadman_ms in (1e308, 10 ** 400, 3.6e13, 24 * 3600 * 1000 + 1):
            a, lines = self.register({"heartbeatIntervalMs": 200, "deadmanTimeoutMs": deadman_ms})
            self.assertEqual(a.deadman_timeout, DAY, deadman_ms)
            self.assertEqual(a.heartbeat_interval, 0.2)
            self.assertIn("dead-man window", lines[0])

    def test_the_switch_fires_once_the_controller_is_silent_for_the_maximum(self):
        a, _ = self.register({"heartbeatIntervalMs": 200, "deadmanTimeoutMs": 1e308})
        ended = agent.Event()

        def end(why, status, kind):
            a.ending = True
            ended.kind = kind
            ended.set()

        a.end = end
        # However long the loop below would wait, the test stops it.
        self.addCleanup(setattr, a, "ending", True)
        a.last_ok = time.monotonic() - DAY
        agent.start_thread(a.log, "deadman", a._deadman_loop)
        self.assertTrue(ended.wait(5), "the dead-man switch did not fire")
        self.assertEqual(ended.kind, "deadman")

    def test_the_heartbeat_interval_stays_under_half_the_dead_man_window(self):
        # 1e308 ms killed the boot and heartbeat threads (OverflowError); a heartbeat as long
        # as the window would let the switch fire between two heartbeats.
        for answer, flags in (
            ({"heartbeatIntervalMs": 1e308, "deadmanTimeoutMs": 1000}, ()),
            ({"heartbeatIntervalMs": 10 ** 400, "deadmanTimeoutMs": 1000}, ()),
            ({"heartbeatIntervalMs": 5000, "deadmanTimeoutMs": 1000}, ()),
            # The answer's window is shorter than the flags' heartbeat leaves room for.
            ({"deadmanTimeoutMs": 1000}, ("--heartbeat-interval", "5")),
        ):
            a, lines = self.register(answer, *flags)
            self.assertEqual((a.heartbeat_interval, a.deadman_timeout), (0.5, 1.0), answer)
            self.assertIn("heartbeat interval", lines[0])
        a, _ = self.register({"heartbeatIntervalMs": 1e308, "deadmanTimeoutMs": 1e308})
        self.assertEqual((a.heartbeat_interval, a.deadman_timeout), (DAY / 2, DAY))

    def test_a_heartbeat_interval_too_short_is_raised_to_the_minimum(self):
        # 5e-324 ms is 0.0 s once divided: heartbeats would go back to back.
        for heartbeat_ms in (5e-324, 1e-300, 0.001):
            a, lines = self.register({"heartbeatIntervalMs": heartbeat_ms, "deadmanTimeoutMs": 5000})
            self.assertEqual(a.heartbeat_interval, 0.01, heartbeat_ms)

    def test_the_flags_are_bounded_alike(self):
        a, lines = self.make_agent("--heartbeat-interval", "1e308", "--deadman-timeout", "1e308")
        self.assertEqual((a.heartbeat_interval, a.deadman_timeout), (DAY / 2, DAY))
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("dead-man window", lines[0])
        a, lines = self.make_agent("--heartbeat-interval", "5", "--deadman-timeout", "60")
        self.assertEqual((a.heartbeat_interval, a.deadman_timeout, lines), (5.0, 60.0, []))


if __name__ == "__main__":
    unittest.main()
