"""The upload loop in-process, against a stand-in for its HTTP client: which uploads it makes,
in what order, and what it does between them."""

import os
import re
import socket as _socket
import tempfile
import threading
import time
import unittest
import zlib

from .test_lean import agent, logged

# Compressible bytes (so uploads go deflated), three uploads' worth at a 64 KiB limit.
LIMIT = 64 * 1024
DATA = b"".join(b"line %d of a chatty log\n" % i for i in range(9000))[: 3 * LIMIT]


def _bytes_of(body):
    """What a body sends: bytes, or the pieces of a tuple one after another."""
    return b"".join(body) if isinstance(body, tuple) else bytes(body)


class ScriptedHttp(object):
    """Answers each output request through `answer(offset, size, body)` when the loop reads the
    answer, and records the requests and, in `events`, what happened to each in order: sent,
    answered, abandoned."""

    def __init__(self, answer, retried=()):
        self.answer = answer
        self.retried = set(retried)
        self.requests = []
        self.events = []

    def send(self, method, path, body=None, content_type=None, timeout=None, encoding=None):
        query = dict(re.findall(r"([a-z]+)=([^&]*)", path.split("?", 1)[1]))
        offset = int(query["offset"])
        raw = zlib.decompress(body, agent.ENCODING_WBITS[encoding]) if encoding is not None else _bytes_of(body)
        self.requests.append((offset, raw))
        self.events.append(("sent", offset))
        return ScriptedExchange(self, offset, raw, offset in self.retried)


class ScriptedExchange(object):
    def __init__(self, http, offset, raw, retried):
        self.http = http
        self.offset = offset
        self.raw = raw
        self.retried = retried

    def answer(self):
        self.http.events.append(("answered", self.offset))
        result = self.http.answer(self.offset, len(self.raw), self.raw)
        if isinstance(result, Exception):
            raise result
        return result

    def abandon(self):
        self.http.events.append(("abandoned", self.offset))


def ok(next_offset):
    return 200, ('{"next":%d}' % next_offset).encode()


class UploadLoopTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="skyrepl-upload-")
        self.addCleanup(os.rmdir, self.tmp)
        cfg = agent.parse_args(["--url", "http://127.0.0.1:9", "--token", "t", "--instance", "i", "--workdir", self.tmp], {})
        self.lines, log = logged()
        self.agent = agent.Agent(cfg, log)
        self.agent.upload_limit = LIMIT
        self.agent.encoding = "gzip"
        self.run_ = agent.Run("r1")
        self.stream = self.run_.stdout
        self.stream.feed(DATA, self.agent)
        self.stream.set_eof()
        # The bodies packed so far, in order: what the loop compressed.
        self.packed = []
        original = agent.pack

        def recording_pack(pieces, size, encoding):
            self.packed.append(b"".join(pieces))
            return original(pieces, size, encoding)

        agent.pack = recording_pack
        self.addCleanup(setattr, agent, "pack", original)

    def run_loop(self, answer, retried=()):
        http = ScriptedHttp(answer, retried)
        self.agent.http = http
        self.agent._upload_loop(self.run_, self.stream)
        self.assertTrue(self.stream.complete)
        return http

    def test_the_next_upload_is_sent_while_the_one_before_it_awaits_its_answer(self):
        http = self.run_loop(lambda offset, size, raw: ok(offset + size))
        self.assertEqual([offset for offset, _ in http.requests], [0, LIMIT, 2 * LIMIT])
        self.assertEqual(b"".join(raw for _, raw in http.requests), DATA)
        # Two in flight at a time: each upload is sent before the answer to the one before it
        # is read, and answers are read in the order the uploads went.
        self.assertEqual(http.events, [
            ("sent", 0), ("sent", LIMIT), ("answered", 0), ("sent", 2 * LIMIT), ("answered", LIMIT),
            ("answered", 2 * LIMIT),
        ])
        # Each upload was compressed once.
        self.assertEqual(self.packed, [DATA[i : i + LIMIT] for i in (0, LIMIT, 2 * LIMIT)])

    def assert_resent_in_order_from(self, http, index, start):
        """The requests from `index` on carry the bytes from `start` on, in order, to the end."""
        self.assertEqual(http.requests[index][0], start)
        self.assertEqual(b"".join(raw for _, raw in http.requests[index:]), DATA[start:])
        for offset, raw in http.requests:
            self.assertEqual(raw, DATA[offset : offset + len(raw)])

    def test_an_answer_that_moves_the_stream_abandons_the_upload_sent_behind_it(self):
        answers = iter([ok(LIMIT), (409, b'{"next":5}')])
        http = self.run_loop(lambda offset, size, raw: next(answers, None) or ok(offset + size))
        # The second answer rewound the stream to byte 5: the upload sent behind it (from
        # 2 × LIMIT) was given up unread, and the bytes from 5 on went again, at once.
        self.assertEqual(http.events[:6], [
            ("sent", 0), ("sent", LIMIT), ("answered", 0), ("sent", 2 * LIMIT), ("answered", LIMIT),
            ("abandoned", 2 * LIMIT),
        ])
        self.assert_resent_in_order_from(http, 3, 5)
        self.assertFalse(any("answered 409" in line for line in self.lines))

    def test_a_failed_answer_abandons_the_upload_sent_behind_it_and_backs_off(self):
        failures = iter([OSError("connection reset")])

        def answer(offset, size, raw):
            if offset == 0:
                return next(failures, None) or ok(offset + size)
            return ok(offset + size)

        http = self.run_loop(answer)
        self.assertEqual(http.events[:4], [("sent", 0), ("sent", LIMIT), ("answered", 0), ("abandoned", LIMIT)])
        self.assert_resent_in_order_from(http, 2, 0)
        self.assertTrue(any("upload at 0 failed: OSError: connection reset" in line for line in self.lines))

    def test_an_upload_sent_twice_abandons_the_one_sent_behind_it(self):
        # Sent again on a fresh connection, the first upload may have reached the controller
        # after the one behind it: that one is sent again rather than trusted.
        http = self.run_loop(lambda offset, size, raw: ok(offset + size), retried=[0])
        self.assertEqual(http.events[:4], [("sent", 0), ("sent", LIMIT), ("answered", 0), ("abandoned", LIMIT)])
        self.assert_resent_in_order_from(http, 2, LIMIT)

    def test_output_too_small_to_compress_goes_in_one_upload_packed_once(self):
        self.stream = agent.OutStream("stdout")
        self.stream.feed(b"x" * 100, self.agent)
        self.stream.set_eof()
        http = self.run_loop(lambda offset, size, raw: ok(offset + size))
        self.assertEqual(http.requests, [(0, b"x" * 100)])
        self.assertEqual(self.packed, [b"x" * 100])


class PackTests(unittest.TestCase):
    def test_pieces_are_compressed_into_one_stream_that_inflates_to_them_in_order(self):
        pieces = [DATA[:1000], memoryview(DATA)[1000:70000], DATA[70000:]]
        for name in ("gzip", "deflate"):
            body, encoding = agent.pack(pieces, len(DATA), name)
            self.assertEqual(encoding, name)
            self.assertEqual(zlib.decompress(body, agent.ENCODING_WBITS[name]), DATA)

    def test_each_encoding_has_its_own_wrapper(self):
        # gzip.decompress reads only the gzip format and zlib.decompress (wbits 15) only the zlib
        # one: each body is what its Content-Encoding names, as HTTP defines them.
        import gzip

        body, _ = agent.pack([DATA], len(DATA), "gzip")
        self.assertEqual(gzip.decompress(body), DATA)
        self.assertRaises(zlib.error, zlib.decompress, body)
        body, _ = agent.pack([DATA], len(DATA), "deflate")
        self.assertEqual(zlib.decompress(body), DATA)
        self.assertRaises(OSError, gzip.decompress, body)

    def test_the_sample_spans_pieces_shorter_than_it(self):
        text = b"a repeated line of text\n" * 400
        pieces = [text[i : i + 100] for i in range(0, len(text), 100)]
        for name in ("gzip", "deflate"):
            body, encoding = agent.pack(pieces, len(text), name)
            self.assertEqual((encoding, zlib.decompress(body, agent.ENCODING_WBITS[name])), (name, text))

    def test_bytes_that_do_not_compress_go_as_the_pieces_they_were_read_in(self):
        # Not joined: the body is the very pieces, which the connection sends one after another.
        noise = os.urandom(200 * 1024)
        pieces = [noise[:5], memoryview(noise)[5:]]
        body, encoding = agent.pack(pieces, len(noise), "gzip")
        self.assertIsNone(encoding)
        self.assertIsInstance(body, tuple)
        self.assertEqual([id(piece) for piece in body], [id(piece) for piece in pieces])
        self.assertEqual(_bytes_of(body), noise)

    def test_output_too_small_to_compress_goes_as_its_pieces_too(self):
        body, encoding = agent.pack([b"ab", memoryview(b"cde")[1:]], 4, "gzip")
        self.assertEqual((encoding, _bytes_of(body)), (None, b"abde"))

    def test_one_whole_read_is_sent_as_itself(self):
        small = b"x" * 100
        body, encoding = agent.pack([small], len(small), "gzip")
        self.assertIs(body, small)
        self.assertIsNone(encoding)


class OneShotServer(object):
    """A controller stand-in on a loopback socket that answers each request `200 {"next":N}`
    on a keep-alive connection and then, when `close_after` says so, closes that connection as
    an idle server does. Records the connections it accepted and the requests it read."""

    def __init__(self, close_after=lambda count: False, silent=False):
        self.close_after = close_after
        self.silent = silent
        self.sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.requests = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        rfile = conn.makefile("rb")
        try:
            while True:
                line = rfile.readline()
                if not line:
                    return
                length = 0
                while True:
                    header = rfile.readline()
                    if header in (b"\r\n", b""):
                        break
                    name, _, value = header.decode("latin-1").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                offset = int(re.search(rb"offset=(\d+)", line).group(1))
                body = rfile.read(length)
                with self.lock:
                    self.requests.append((offset, body))
                    count = len(self.requests)
                if self.silent:
                    return
                answer = ('{"next":%d}' % (offset + len(body))).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(answer), answer))
                if self.close_after(count):
                    return
        finally:
            rfile.close()
            conn.close()

    def close(self):
        self.sock.close()


class ExchangeTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="skyrepl-exchange-")
        self.addCleanup(os.rmdir, self.tmp)

    def http_to(self, server):
        self.addCleanup(server.close)
        cfg = agent.parse_args(
            ["--url", "http://127.0.0.1:%d" % server.port, "--token", "t", "--instance", "i", "--workdir", self.tmp], {}
        )
        http = agent.Agent(cfg, logged()[1]).http
        self.addCleanup(lambda: [conn.close() for conn in http.idle])
        return http

    def test_two_requests_are_in_flight_at_once_on_two_connections(self):
        server = OneShotServer()
        http = self.http_to(server)
        first = http.send("POST", "/v1/agent/output?offset=0", b"abc")
        second = http.send("POST", "/v1/agent/output?offset=3", b"de")
        self.assertEqual(first.answer(), (200, b'{"next":3}'))
        self.assertEqual(second.answer(), (200, b'{"next":5}'))
        self.assertEqual(server.connections, 2)
        # Both went back to the pool: the next request reuses one, opening none.
        self.assertEqual(http.request("POST", "/v1/agent/output?offset=5", b"f"), (200, b'{"next":6}'))
        self.assertEqual(server.connections, 2)

    def test_a_pooled_connection_the_server_closed_is_retried_once_on_a_fresh_one(self):
        server = OneShotServer(close_after=lambda count: count == 1)
        http = self.http_to(server)
        self.assertEqual(http.request("POST", "/v1/agent/output?offset=0", b"abc"), (200, b'{"next":3}'))
        time.sleep(0.1)  # the server has closed the pooled connection by now
        exchange = http.send("POST", "/v1/agent/output?offset=3", b"de")
        self.assertEqual(exchange.answer(), (200, b'{"next":5}'))
        self.assertTrue(exchange.retried)
        self.assertEqual(server.connections, 2)
        self.assertEqual(server.requests, [(0, b"abc"), (3, b"de")])

    def test_a_body_of_pieces_goes_as_one_request_of_their_length(self):
        # Small bodies go with their head in one send, large ones after it piece by piece.
        server = OneShotServer()
        http = self.http_to(server)
        large = os.urandom(100 * 1024)
        self.assertEqual(http.request("POST", "/v1/agent/output?offset=0", (b"ab", memoryview(b"xcd")[1:])), (200, b'{"next":4}'))
        pieces = (large[:70000], memoryview(large)[70000:])
        self.assertEqual(http.request("POST", "/v1/agent/output?offset=4", pieces), (200, b'{"next":%d}' % (4 + len(large))))
        self.assertEqual(server.requests, [(0, b"abcd"), (4, large)])

    def test_a_body_of_pieces_is_sent_whole_again_on_a_fresh_connection(self):
        server = OneShotServer(close_after=lambda count: count == 1)
        http = self.http_to(server)
        self.assertEqual(http.request("POST", "/v1/agent/output?offset=0", b"abc"), (200, b'{"next":3}'))
        time.sleep(0.1)  # the server has closed the pooled connection by now
        large = os.urandom(40 * 1024)
        exchange = http.send("POST", "/v1/agent/output?offset=3", (large[:1], memoryview(large)[1:]))
        self.assertEqual(exchange.answer(), (200, b'{"next":%d}' % (3 + len(large))))
        self.assertTrue(exchange.retried)
        self.assertEqual(server.requests, [(0, b"abc"), (3, large)])

    def test_a_fresh_connection_closed_without_an_answer_is_not_retried(self):
        server = OneShotServer(silent=True)
        http = self.http_to(server)
        with self.assertRaises((OSError, agent.HttpError)):
            http.send("POST", "/v1/agent/output?offset=0", b"abc").answer()
        self.assertEqual(server.connections, 1)
        self.assertEqual(server.requests, [(0, b"abc")])


if __name__ == "__main__":
    unittest.main()
