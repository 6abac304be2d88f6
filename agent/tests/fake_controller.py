"""A controller that speaks docs/agent-protocol.md, for testing the agent as a real process.

It keeps output the way the real store does (bytes already held are skipped, a chunk that
starts beyond what is held is refused with 409 and the next expected offset), streams events
as chunked Server-Sent Events with `: ping` comments, and records everything it is sent so
tests can assert on it. Hooks let a test make it misbehave on purpose.
"""

import json
import zlib
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class FakeController(object):
    def __init__(self, token="test-token", heartbeat_ms=200, deadman_ms=5000, ping_interval=0.1):
        self.token = token
        self.heartbeat_ms = heartbeat_ms
        self.deadman_ms = deadman_ms
        self.ping_interval = ping_interval
        self.cond = threading.Condition()
        # Statuses answered to the first register calls before the normal 200.
        self.register_statuses = []
        # Replaces the whole register answer when set: (status, body dict).
        self.register_answer = None
        self.registrations = []
        self.heartbeats = []
        self.heartbeat_status = 200
        self.outputs = {}
        # (runId, stream, offset, length, status) per output request, in arrival order; length
        # counts the bytes of the run (after inflating a compressed upload).
        self.output_log = []
        # Content encodings named in the register answer (`outputEncodings`), when set.
        self.output_encodings = None
        # (stream, Content-Encoding or None, bytes on the wire, bytes of the run) per upload.
        self.wire_log = []
        # hook(controller, run_id, stream, offset, data, store) -> (status, body); `store()`
        # does what the real controller does and returns its (status, body).
        self.output_hook = None
        self.exit_posts = []
        self.exits = {}
        # Bytes held per stream when the first exit of a run arrived.
        self.held_at_exit = {}
        self.events = []
        self.sse_connections = 0
        self.sse_generation = 0
        self.silent = False
        self.revoked = False
        self.closed = False
        controller = self

        class Handler(_Handler):
            ctrl = controller

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    # -- what tests call --------------------------------------------------------------------

    def send(self, event, data):
        self.send_raw("event: %s\ndata: %s\n\n" % (event, json.dumps(data)))

    def send_raw(self, text):
        """Queues raw event-stream text (it may be malformed on purpose). Every new event-stream
        connection gets the whole history again, as the real controller resends after a
        reconnect."""
        if isinstance(text, str):
            text = text.encode("utf-8")
        with self.cond:
            self.events.append(text)
            self.cond.notify_all()

    def drop_event_streams(self):
        with self.cond:
            self.sse_generation += 1
            self.cond.notify_all()

    def go_silent(self):
        """From now on nothing is answered: requests hang, the event stream goes quiet."""
        with self.cond:
            self.silent = True
            self.cond.notify_all()

    def revoke(self):
        """From now on every request is answered 401."""
        with self.cond:
            self.revoked = True
            self.cond.notify_all()

    def output(self, run_id, stream):
        with self.cond:
            return bytes(self.outputs.get((run_id, stream), b""))

    def wait_for(self, predicate, timeout=15.0, what="condition"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
                self.cond.wait(min(remaining, 0.05))

    def wait_exit(self, run_id, timeout=15.0):
        return self.wait_for(lambda: self.exits.get(run_id), timeout, "the exit of run %s" % run_id)

    def wait_output(self, run_id, stream, predicate, timeout=15.0):
        return self.wait_for(
            lambda: predicate(bytes(self.outputs.get((run_id, stream), b""))) and self.outputs[(run_id, stream)],
            timeout,
            "%s of run %s" % (stream, run_id),
        )

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()

    # -- the protocol ------------------------------------------------------------------------

    def store(self, run_id, stream, offset, data):
        with self.cond:
            buf = self.outputs.setdefault((run_id, stream), bytearray())
            have = len(buf)
            if offset > have:
                return 409, {"next": have}
            buf += data[have - offset:]
            self.cond.notify_all()
            return 200, {"next": len(buf)}

    def hang_while_silent(self):
        with self.cond:
            while self.silent and not self.closed:
                self.cond.wait(0.1)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Tests kill agents that still hold pooled keep-alive connections; the reset that
        # follows is expected. Anything else is a bug in this fake and is printed.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        ThreadingHTTPServer.handle_error(self, request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    ctrl = None

    def setup(self):
        BaseHTTPRequestHandler.setup(self)
        # Headers and body go out as two writes; without this, Nagle holds the body back until
        # the agent's delayed ACK (40 ms per request), which would hide the agent's own latency.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):
        pass

    def _answer(self, status, body):
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _admitted(self):
        ctrl = self.ctrl
        if ctrl.silent:
            ctrl.hang_while_silent()
            self.close_connection = True
            return False
        if ctrl.revoked or self.headers.get("Authorization") != "Bearer " + ctrl.token:
            self._body()
            self._answer(401, {"error": "unknown token"})
            return False
        if self.headers.get("X-SkyREPL-Protocol") != "1":
            self._body()
            self._answer(409, {"error": "protocol mismatch", "protocol": 1})
            return False
        return True

    def do_GET(self):
        if not self._admitted():
            return
        if urlsplit(self.path).path != "/v1/agent/events":
            return self._answer(404, {"error": "no route"})
        self._events()

    def do_POST(self):
        if not self._admitted():
            return
        ctrl = self.ctrl
        url = urlsplit(self.path)
        body = self._body()
        headers = dict(self.headers.items())
        if url.path == "/v1/agent/register":
            with ctrl.cond:
                ctrl.registrations.append((headers, body))
                failing = ctrl.register_statuses.pop(0) if ctrl.register_statuses else None
                ctrl.cond.notify_all()
            if failing is not None:
                return self._answer(failing, {"error": "not now"})
            if ctrl.register_answer is not None:
                return self._answer(*ctrl.register_answer)
            answer = {"protocol": 1, "heartbeatIntervalMs": ctrl.heartbeat_ms, "deadmanTimeoutMs": ctrl.deadman_ms}
            if ctrl.output_encodings is not None:
                answer["outputEncodings"] = ctrl.output_encodings
            return self._answer(200, answer)
        if url.path == "/v1/agent/heartbeat":
            with ctrl.cond:
                ctrl.heartbeats.append((headers, json.loads(body.decode("utf-8"))))
                ctrl.cond.notify_all()
            return self._answer(ctrl.heartbeat_status, {})
        if url.path == "/v1/agent/output":
            query = parse_qs(url.query)
            run_id = query["runId"][0]
            stream = query["stream"][0]
            offset = int(query["offset"][0])
            encoding = self.headers.get("Content-Encoding")
            wire = len(body)
            if encoding in ("gzip", "deflate"):
                # wbits 31 reads only the gzip format and 15 only the zlib one, as HTTP names them.
                try:
                    body = zlib.decompress(body, 31 if encoding == "gzip" else 15)
                except zlib.error:
                    return self._answer(400, {"error": "the body is not %s data" % encoding})
                if int(query["size"][0]) != len(body):
                    return self._answer(400, {"error": "size does not match the inflated body"})
            elif encoding is not None:
                return self._answer(415, {"error": "unsupported content-encoding"})
            with ctrl.cond:
                ctrl.wire_log.append((stream, encoding, wire, len(body)))

            def store():
                return ctrl.store(run_id, stream, offset, body)

            hook = ctrl.output_hook
            status, answer = hook(ctrl, run_id, stream, offset, body, store) if hook else store()
            with ctrl.cond:
                ctrl.output_log.append((run_id, stream, offset, len(body), status))
                ctrl.cond.notify_all()
            return self._answer(status, answer)
        if url.path == "/v1/agent/exit":
            report = json.loads(body.decode("utf-8"))
            with ctrl.cond:
                ctrl.exit_posts.append(report)
                run_id = report["runId"]
                if run_id not in ctrl.exits:
                    ctrl.exits[run_id] = report
                    ctrl.held_at_exit[run_id] = (
                        len(ctrl.outputs.get((run_id, "stdout"), b"")),
                        len(ctrl.outputs.get((run_id, "stderr"), b"")),
                    )
                ctrl.cond.notify_all()
            return self._answer(200, {})
        self._answer(404, {"error": "no route"})

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _events(self):
        ctrl = self.ctrl
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with ctrl.cond:
            ctrl.sse_connections += 1
            generation = ctrl.sse_generation
            ctrl.cond.notify_all()
        sent = 0
        next_ping = time.monotonic()
        try:
            self._chunk(b": connected\n\n")
            while True:
                with ctrl.cond:
                    while True:
                        if ctrl.closed or ctrl.sse_generation != generation:
                            self.close_connection = True
                            return
                        if ctrl.silent:
                            ctrl.hang_while_silent()
                            self.close_connection = True
                            return
                        if sent < len(ctrl.events) or time.monotonic() >= next_ping:
                            break
                        ctrl.cond.wait(max(0.0, next_ping - time.monotonic()))
                    pending = ctrl.events[sent:]
                    sent = len(ctrl.events)
                for event in pending:
                    self._chunk(event)
                if time.monotonic() >= next_ping:
                    self._chunk(b": ping\n\n")
                    next_ping = time.monotonic() + ctrl.ping_interval
        except OSError:
            self.close_connection = True
