"""The upload loop in-process, against a stand-in for its HTTP client: which uploads it makes,
in what order, and what it does between them."""

import os
import re
import tempfile
import time
import unittest
import zlib

from .test_lean import agent, logged

# Compressible bytes (so uploads go deflated), three uploads' worth at a 64 KiB limit.
LIMIT = 64 * 1024
DATA = b"".join(b"line %d of a chatty log\n" % i for i in range(9000))[: 3 * LIMIT]
ANSWER_WAIT = 5.0


class ScriptedHttp(object):
    """Answers each output request through `answer(offset, size, body)`, and records them."""

    def __init__(self, answer):
        self.answer = answer
        self.requests = []

    def request(self, method, path, body=None, content_type=None, timeout=None, encoding=None):
        query = dict(re.findall(r"([a-z]+)=([^&]*)", path.split("?", 1)[1]))
        offset = int(query["offset"])
        raw = zlib.decompress(body, agent.ENCODING_WBITS[encoding]) if encoding is not None else bytes(body)
        self.requests.append((offset, raw))
        return self.answer(offset, len(raw), raw)


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
        # The bodies packed so far, in the order packing started, each with the event set when
        # it is done: what the loop compressed, and when.
        self.packed = []
        original = agent.pack

        def recording_pack(pieces, size, encoding):
            entry = (b"".join(pieces), agent.Event())
            self.packed.append(entry)
            try:
                return original(pieces, size, encoding)
            finally:
                entry[1].set()

        agent.pack = recording_pack
        self.addCleanup(setattr, agent, "pack", original)

    def packing_of(self, data):
        for body, done in self.packed:
            if body == data:
                return done
        return None

    def wait_for_packing(self, data):
        """Waits (at most ANSWER_WAIT) until `data` has been compressed; whether it was."""
        deadline = time.monotonic() + ANSWER_WAIT
        while time.monotonic() < deadline:
            done = self.packing_of(data)
            if done is not None and done.wait(0.01):
                return True
            time.sleep(0.01)
        return False

    def test_the_next_upload_is_compressed_while_the_one_before_it_is_in_flight(self):
        seen_in_flight = []

        def answer(offset, size, raw):
            following = DATA[offset + size : offset + size + LIMIT]
            if following:
                # The controller holds this answer until the agent has compressed the next
                # upload: without compressing ahead, that never happens and this waits in vain.
                seen_in_flight.append(self.wait_for_packing(following))
            return ok(offset + size)

        http = ScriptedHttp(answer)
        self.agent.http = http
        self.agent._upload_loop(self.run_, self.stream)

        self.assertEqual([offset for offset, _ in http.requests], [0, LIMIT, 2 * LIMIT])
        self.assertEqual(b"".join(raw for _, raw in http.requests), DATA)
        self.assertEqual(seen_in_flight, [True, True])
        # Each upload was compressed once, the ones ahead included.
        self.assertEqual([body for body, _ in self.packed], [DATA[i : i + LIMIT] for i in (0, LIMIT, 2 * LIMIT)])
        self.assertTrue(self.stream.complete)

    def test_an_upload_compressed_ahead_is_dropped_when_the_controller_asks_for_other_bytes(self):
        answers = iter([ok(LIMIT), (409, b'{"next":5}')])

        def answer(offset, size, raw):
            return next(answers, None) or ok(offset + size)

        http = ScriptedHttp(answer)
        self.agent.http = http
        self.agent._upload_loop(self.run_, self.stream)

        # The second answer rewound the stream to byte 5: the upload packed ahead (from 2 × LIMIT)
        # was not sent, and the bytes from 5 on went again, in order, to the end.
        offsets = [offset for offset, _ in http.requests]
        self.assertEqual(offsets[:3], [0, LIMIT, 5])
        resent = b"".join(raw for offset, raw in http.requests[2:])
        self.assertEqual(resent, DATA[5:])
        for offset, raw in http.requests:
            self.assertEqual(raw, DATA[offset : offset + len(raw)])
        self.assertTrue(self.stream.complete)

    def test_output_too_small_to_compress_is_not_packed_ahead(self):
        self.stream = agent.OutStream("stdout")
        self.stream.feed(b"x" * 100, self.agent)
        self.stream.set_eof()
        http = ScriptedHttp(lambda offset, size, raw: ok(offset + size))
        self.agent.http = http
        self.agent._upload_loop(self.run_, self.stream)
        self.assertEqual(http.requests, [(0, b"x" * 100)])
        self.assertEqual([body for body, _ in self.packed], [b"x" * 100])


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

    def test_bytes_that_do_not_compress_go_as_they_are_in_one_body(self):
        noise = os.urandom(200 * 1024)
        body, encoding = agent.pack([noise[:5], memoryview(noise)[5:]], len(noise), "gzip")
        self.assertEqual((encoding, bytes(body)), (None, noise))

    def test_one_whole_read_is_sent_as_itself(self):
        small = b"x" * 100
        body, encoding = agent.pack([small], len(small), "gzip")
        self.assertIs(body, small)
        self.assertIsNone(encoding)


if __name__ == "__main__":
    unittest.main()
