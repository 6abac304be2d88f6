#!/usr/bin/env python3
"""SkyREPL on-instance agent, protocol version 1 (docs/agent-protocol.md).

One process per instance. It registers with the controller that launched the instance, takes
commands from an event stream, runs them, uploads their output with byte offsets, reports their
exits, and ends the instance by itself when the controller goes silent (the dead-man switch).

Python 3.8+, standard library only, one file: every provider ships this very file unchanged.

Start-up is part of every launch's latency, so the agent imports only C modules: json, socket,
subprocess, signal, threading and urllib.parse would cost about 25 ms here, more than Python's
own start, because they pull in re, enum, functools and collections, and os itself about 1 ms
more. It uses their C cores instead (_json, _socket, _signal, _thread, posix) and posix_spawn,
through the small equivalents in "Lean start-up" below; where a C core is missing (another
Python), the full module is imported on first use instead.
"""

import _thread
import errno
import io
import select
import sys
import time

try:
    # os's C core. os itself, with posixpath, stat and _collections_abc, took about 1.2 ms of
    # every launch's start here, for os.path and os.environ, which are replaced below.
    import posix as _os
except ImportError:  # not a POSIX CPython: os has the same names
    import os as _os
try:
    import _signal
except ImportError:  # not CPython: the module that wraps it has the same names
    import signal as _signal
try:
    import _socket
except ImportError:
    import socket as _socket
try:
    from _collections import deque
except ImportError:
    from collections import deque
try:
    from _json import encode_basestring_ascii as _json_quote
    from _json import make_scanner as _json_scanner
except ImportError:
    _json_quote = _json_scanner = None

PROTOCOL = 1
AGENT_VERSION = "1.0.0"

EXIT_OK = 0
EXIT_BAD_ARGS = 2
EXIT_TOKEN_REFUSED = 3
EXIT_PROTOCOL_REFUSED = 4

# The protocol's cap on one output request, unless the register answer names a larger one
# (`maxOutputBytes`, at most MAX_UPLOAD). While uploads are in flight the pipe keeps being
# read, and the next upload takes all of it up to the cap: a fast writer is sent in few large
# requests, a slow one still one read at a time.
CHUNK = 256 * 1024
MAX_UPLOAD = 16 * 1024 * 1024
# Bytes asked of the pipe per read (its size, see PIPE_SIZE): fewer reads for a fast writer.
READ_SIZE = 1024 * 1024
# Uploads of at least DEFLATE_MIN bytes are compressed (DEFLATE, level 1: about as fast as the
# pipe delivers text) when the controller takes a compressed encoding and a sample of the first
# DEFLATE_SAMPLE bytes shrinks below DEFLATE_KEEP of its size: random or already-compressed
# output goes as it is.
DEFLATE_MIN = 4096
DEFLATE_SAMPLE = 64 * 1024
DEFLATE_KEEP = 0.9
# The content encodings the agent can send, by the zlib window bits that make each: `gzip`
# (CRC-32) and `deflate` (the zlib format, Adler-32). The agent uses the first the controller
# lists that it knows; a controller lists `gzip` first because zlib's CRC-32 costs about a third
# of what its Adler-32 does, which was a quarter of the agent's compressing.
ENCODING_WBITS = {"gzip": 31, "deflate": 15}
# Acknowledged bytes kept per stream so that a controller that lost its last chunks (answered,
# then crashed before storing them) can ask for them again with a 409.
RETAIN = 4 * 1024 * 1024
# Output uploads in flight per stream: the next is sent while the one before it awaits its
# answer, so reading and compressing here, the network, and storing in the controller overlap
# instead of taking turns, and a distant controller's round trip is waited for once per two
# uploads, not once per upload.
UPLOADS_IN_FLIGHT = 2
# What the answer to an upload meant for the uploads sent after it (Agent._answer).
IN_ORDER, MOVED, FAILED = "in order", "moved", "failed"
# Unacknowledged bytes per stream before the agent stops reading the pipe: a slow or absent
# controller then slows the writer down instead of growing the agent without bound.
MAX_UNACKED = 16 * 1024 * 1024
# SIGTERM to SIGKILL, for cancel, time-out, dead-man and lingering members of a finished run.
KILL_GRACE = 2.0
# How long a `shutdown` event waits for the killed runs' output and exits to be acknowledged.
SHUTDOWN_REPORT_WAIT = 5.0
# Total time the dead-man switch gives its last exit reports.
DEADMAN_REPORT_BUDGET = 1.0
# The longest dead-man window the agent keeps, whatever its flags or the register answer ask for:
# the switch is the layer of the cleanup guarantee that holds when no controller ever comes back,
# so no value (1e308 ms turned it off) may put it out of reach. A day bounds what an abandoned
# instance costs, and is far above any window a controller uses (60 s by default).
MAX_DEADMAN = 24 * 3600.0
# The shortest heartbeat interval: a tiny one (5e-324 ms is 0 s once divided) would send
# heartbeats back to back.
MIN_HEARTBEAT = 0.01
# Exit status reported for a run that could not be started (a missing workdir, a bad variable) or
# was refused (a malformed `run` event).
FAILED_START_STATUS = 127
# Linux F_SETPIPE_SZ (fcntl only names it from Python 3.10).
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1024 * 1024
TOKEN_VARIABLE = "SKYREPL_AGENT_TOKEN"
# A run to start at once, before registering (docs/agent-protocol.md, "Start-up run").
RUN_VARIABLE = "SKYREPL_AGENT_RUN"
POWEROFF_VARIABLE = "SKYREPL_AGENT_ALLOW_POWEROFF"

USAGE = (
    "usage: skyrepl_agent.py --url URL --token TOKEN --instance NAME"
    " [--heartbeat-interval SECONDS] [--deadman-timeout SECONDS]"
    " [--shutdown exit|poweroff|command:CMD] [--workdir DIR] [--log FILE]"
)


# -- lean start-up ---------------------------------------------------------------------------
# What the agent needs of os, json, urllib.parse, threading and signal, on their C cores (see
# the module docstring for why). Each is the part of the module's behaviour the agent relies on.

DEVNULL = "/dev/null"


def environ():
    """The process's environment as os.environ has it: names and values decoded as the file
    system's encoding, with undecodable bytes kept as surrogates."""
    if _os.__name__ == "os":
        return dict(_os.environ)
    encoding = sys.getfilesystemencoding()
    return dict(
        (name.decode(encoding, "surrogateescape"), value.decode(encoding, "surrogateescape"))
        for name, value in _os.environ.items()
    )


def isdir(path):
    """os.path.isdir: an existing directory, following links."""
    try:
        return _os.stat(path).st_mode & 0o170000 == 0o040000
    except (OSError, ValueError):
        return False


def join(base, path):
    """os.path.join of two parts: an absolute `path` replaces `base`."""
    if path.startswith("/") or not base:
        return path
    return base + path if base.endswith("/") else base + "/" + path


def normpath(path):
    """posixpath.normpath: `.`, `..` and repeated slashes resolved in the text (POSIX keeps
    exactly two leading slashes, which may mean something else)."""
    if not path:
        return "."
    initial = 0
    if path.startswith("/"):
        initial = 2 if path.startswith("//") and not path.startswith("///") else 1
    parts = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part != ".." or (not initial and not parts) or (parts and parts[-1] == ".."):
            parts.append(part)
        elif parts:
            parts.pop()
    return "/" * initial + "/".join(parts) or "."


def abspath(path):
    """os.path.abspath: `path` from the working directory, normalised."""
    return normpath(join(_os.getcwd(), path))


_JSON_SPACE = " \t\n\r"


class _JsonPlain(object):
    """The settings _json's scanner reads off a json.JSONDecoder: plain types, no hooks."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float


def _json_module():
    import json

    return json


def json_loads(text):
    """json.loads: one JSON value, with only whitespace around it; ValueError otherwise."""
    if _json_scanner is None:
        return _json_module().loads(text)
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    try:
        value, end = _json_scanner(_JsonPlain)(text, start)
    except (StopIteration, SystemError):
        # Malformed. Some Pythons' _json describe a fault with json.decoder's exception only if
        # json.decoder is imported already (SystemError otherwise): json itself says what is wrong.
        return _json_module().loads(text)
    if text[end:].strip(_JSON_SPACE):
        return _json_module().loads(text)
    return value


def json_dumps(value):
    """json.dumps, compact, of what the agent sends: dicts with str keys, lists, str, int,
    float, bool and None."""
    if _json_quote is None:
        return _json_module().dumps(value, separators=(",", ":"))
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _json_quote(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("%r is not JSON" % value)
        return float.__repr__(value)
    if isinstance(value, dict):
        return "{%s}" % ",".join("%s:%s" % (_json_quote(k), json_dumps(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[%s]" % ",".join(json_dumps(v) for v in value)
    raise TypeError("%s is not JSON" % type(value).__name__)


class Url(object):
    """The parts of an http(s) URL the agent uses, as urllib.parse.urlsplit gives them: scheme
    and host in lower case, the port as a number (None if absent), the path without query or
    fragment. ValueError for a URL that is not http or https or has no host or a bad port."""

    def __init__(self, text):
        if any(c <= " " or c == "\x7f" for c in text):
            raise ValueError("the URL holds a space or a control character")
        scheme, sep, rest = text.partition("://")
        self.scheme = scheme.lower()
        if not sep or self.scheme not in ("http", "https"):
            raise ValueError("not an http:// or https:// URL")
        end = len(rest)
        for mark in "/?#":
            found = rest.find(mark)
            if found != -1 and found < end:
                end = found
        netloc = rest[:end].rpartition("@")[2]
        path = rest[end:]
        for mark in "?#":
            path = path.partition(mark)[0]
        self.path = path
        if netloc.startswith("["):
            host, bracket, after = netloc[1:].partition("]")
            if not bracket or (after and not after.startswith(":")):
                raise ValueError("bad IPv6 address in the URL")
            port = after[1:]
        else:
            host, _, port = netloc.partition(":")
        # An IPv6 zone (after %) keeps its case, as urlsplit keeps it.
        name, percent, zone = host.partition("%")
        self.host = name.lower() + percent + zone
        if not self.host:
            raise ValueError("the URL has no host")
        self.port = None
        if port:
            if not port.isdigit() or not port.isascii() or int(port) > 65535:
                raise ValueError("port %r is not a number from 0 to 65535" % port)
            self.port = int(port)


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote_component(text):
    """urllib.parse.quote(text, safe=""): everything but unreserved characters %-escaped."""
    return "".join(chr(b) if b in _UNRESERVED else "%%%02X" % b for b in text.encode("utf-8"))


# The longest single lock wait. A lock refuses a timeout beyond _thread.TIMEOUT_MAX (OverflowError,
# which killed the thread; about 292 years with a 64-bit time_t), so a longer wait (a run's
# maxDurationMs may be any length) is made a slice at a time.
WAIT_SLICE = 24 * 3600.0


def _acquire(lock, timeout):
    """lock.acquire(True, timeout) for a positive timeout of any length."""
    if timeout <= WAIT_SLICE:
        return lock.acquire(True, timeout)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return lock.acquire(False)
        if lock.acquire(True, min(left, WAIT_SLICE)):
            return True


class Condition(object):
    """threading.Condition's `with`, wait and notify_all, on _thread locks. A waiter sleeps on
    a lock of its own that notify_all releases; wait returns whether it was notified."""

    def __init__(self):
        self._lock = _thread.allocate_lock()
        self._waiters = []

    def __enter__(self):
        self._lock.acquire()
        return self

    def __exit__(self, *exc):
        self._lock.release()

    def wait(self, timeout=None):
        waiter = _thread.allocate_lock()
        waiter.acquire()
        self._waiters.append(waiter)
        self._lock.release()
        notified = False
        try:
            if timeout is None:
                notified = waiter.acquire()
            elif timeout > 0:
                notified = _acquire(waiter, timeout)
            else:
                notified = waiter.acquire(False)
        finally:
            self._lock.acquire()
            if not notified and waiter in self._waiters:
                self._waiters.remove(waiter)
        return notified

    def notify_all(self):
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.release()


class Event(object):
    """threading.Event: a flag that can be waited for."""

    def __init__(self):
        self._cond = Condition()
        self._set = False

    def is_set(self):
        return self._set

    def set(self):
        with self._cond:
            self._set = True
            self._cond.notify_all()

    def wait(self, timeout=None):
        with self._cond:
            if not self._set and (timeout is None or timeout > 0):
                self._cond.wait(timeout)
            return self._set


def start_thread(log, name, fn, *args):
    """A daemon thread (the process does not wait for it) running fn(*args); an exception it
    lets out is logged, and Ending just ends it."""
    _thread.start_new_thread(_guarded, (log, name, fn, args))


def _guarded(log, name, fn, args):
    try:
        fn(*args)
    except Ending:
        pass
    except Exception as err:
        log("internal error in %s: %r" % (name, err))


class Timer(object):
    """threading.Timer: fn(*args) after `seconds`, on its own thread, unless cancelled first."""

    def __init__(self, log, seconds, fn, *args):
        self._cancelled = Event()
        start_thread(log, "timer", self._run, seconds, fn, args)

    def _run(self, seconds, fn, args):
        if not self._cancelled.wait(seconds):
            fn(*args)

    def cancel(self):
        self._cancelled.set()


def _signal_names():
    # As signal.Signals names them: of two names for one number, the first in alphabetical order.
    names = {}
    for name in sorted(vars(_signal)):
        number = getattr(_signal, name)
        if name.isupper() and name.startswith("SIG") and not name.startswith("SIG_") and isinstance(number, int):
            names.setdefault(number, name)
    return names


SIGNAL_NAMES = _signal_names()


def signal_name(number):
    name = SIGNAL_NAMES.get(number)
    if name is not None:
        return name
    if _signal.SIGRTMIN < number < _signal.SIGRTMAX:
        return "SIGRTMIN+%d" % (number - _signal.SIGRTMIN)
    return "SIG%d" % number


class BadArgs(Exception):
    pass


class Ending(Exception):
    """The agent is ending (token refused, dead-man switch...): the worker that sees it stops."""


class Config(object):
    def __init__(self):
        self.url = ""
        # `url`'s parts (a Url), once it has been checked.
        self.endpoint = None
        self.token = ""
        self.instance = ""
        self.heartbeat_interval = 5.0
        self.deadman_timeout = 60.0
        self.shutdown = "exit"
        self.workdir = ""
        self.log = None
        self.log_fd = None
        self.startup_run = None


FLAGS = (
    "--url",
    "--token",
    "--instance",
    "--heartbeat-interval",
    "--deadman-timeout",
    "--shutdown",
    "--workdir",
    "--log",
)


def _seconds(flag, text):
    try:
        value = float(text)
    except ValueError:
        raise BadArgs("%s must be a number of seconds, got %r" % (flag, text))
    # `value == value` rejects NaN, which every comparison would otherwise let through.
    if not (value == value and 0 < value < float("inf")):
        raise BadArgs("%s must be a positive number of seconds, got %r" % (flag, text))
    return value


def parse_args(argv, environ):
    values = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            return None
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
        else:
            name = arg
            if name in FLAGS:
                if i + 1 >= len(argv):
                    raise BadArgs("%s needs a value" % name)
                i += 1
                value = argv[i]
            else:
                value = None
        if name not in FLAGS:
            raise BadArgs("unknown argument %r" % arg)
        values[name] = value
        i += 1

    cfg = Config()
    cfg.url = values.get("--url") or ""
    cfg.token = values.get("--token") or environ.get(TOKEN_VARIABLE, "")
    cfg.instance = values.get("--instance") or ""
    if not cfg.url:
        raise BadArgs("--url is required")
    if not cfg.token:
        raise BadArgs("--token (or %s) is required" % TOKEN_VARIABLE)
    if not cfg.instance:
        raise BadArgs("--instance is required")
    try:
        cfg.endpoint = Url(cfg.url)
    except ValueError as err:
        raise BadArgs("--url must be an http:// or https:// URL with a host, got %r: %s" % (cfg.url, err))
    if "--heartbeat-interval" in values:
        cfg.heartbeat_interval = _seconds("--heartbeat-interval", values["--heartbeat-interval"])
    if "--deadman-timeout" in values:
        cfg.deadman_timeout = _seconds("--deadman-timeout", values["--deadman-timeout"])
    shutdown = values.get("--shutdown", "exit")
    if shutdown not in ("exit", "poweroff") and not (
        shutdown.startswith("command:") and shutdown[len("command:"):].strip()
    ):
        raise BadArgs("--shutdown must be exit, poweroff or command:CMD, got %r" % shutdown)
    cfg.shutdown = shutdown
    cfg.workdir = abspath(values.get("--workdir") or _os.getcwd())
    if not isdir(cfg.workdir):
        raise BadArgs("--workdir %r is not a directory" % cfg.workdir)
    cfg.log = values.get("--log")
    startup_run = environ.get(RUN_VARIABLE)
    if startup_run:
        try:
            cfg.startup_run = json_loads(startup_run)
        except ValueError:
            raise BadArgs("%s is not JSON" % RUN_VARIABLE)
        if not isinstance(cfg.startup_run, dict):
            raise BadArgs("%s is not a JSON object" % RUN_VARIABLE)
    return cfg


class Log(object):
    """One `write` per line on an O_APPEND descriptor: whole lines, no lock, no buffering."""

    def __init__(self, fd):
        self.fd = fd

    def __call__(self, message):
        now = time.time()
        line = "%s.%03dZ skyrepl-agent[%d] %s\n" % (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)),
            int(now * 1000) % 1000,
            _os.getpid(),
            message,
        )
        try:
            _os.write(self.fd, line.encode("utf-8", "replace"))
        except OSError:
            pass


def split_returncode(returncode):
    """subprocess's convention (negative: killed by that signal) to the protocol's pair."""
    if returncode < 0:
        return None, signal_name(-returncode)
    return returncode, None


def signal_group(pgid, sig):
    try:
        _os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


_proc_usable = None


def _proc_matches_namespace():
    # Inside a pid namespace without its own /proc mount, /proc shows another namespace's pids;
    # reading it would then name the wrong processes.
    global _proc_usable
    if _proc_usable is None:
        try:
            with open("/proc/self/stat", "rb") as f:
                _proc_usable = int(f.read().split(None, 1)[0]) == _os.getpid()
        except (OSError, ValueError):
            _proc_usable = False
    return _proc_usable


def group_alive(pgid):
    """Whether process group `pgid` has a member that is not a zombie.

    kill(-pgid, 0) also succeeds for zombies, which an init that does not reap (some container
    and micro-VM inits do not) keeps forever; only /proc tells those apart.
    """
    try:
        _os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not _proc_matches_namespace():
        return True
    try:
        names = _os.listdir("/proc")
    except OSError:
        return True
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields are counted after the last ')'.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid).encode() and fields[0] not in (b"Z", b"X"):
            return True
    return False


INSTANCE_MARKER = b"SKYREPL_INSTANCE"


def _parent_of(name):
    try:
        with open("/proc/%s/stat" % name, "rb") as f:
            stat = f.read()
        return int(stat[stat.rfind(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def kill_marked(log):
    """SIGKILLs every other process that carries this agent's instance marker, and every child
    of this agent's (orphans it adopted, see become_subreaper).

    A run's process group is not all of it: a member that left with setsid or a double fork
    escapes killpg. The local provider marks every process of a sandbox with SKYREPL_INSTANCE,
    and in a sandbox without a pid namespace (`process`) nothing else ends what escaped when no
    controller is left to terminate the instance (the dead-man switch). Without the marker, or
    without a /proc of this namespace, there is nothing to find.
    """
    if not _proc_matches_namespace():
        return
    # As /proc shows it, which is what the provider's scans read (a forked sandbox writes its
    # variables there, over the fork server's).
    try:
        with open("/proc/self/environ", "rb") as f:
            mine = f.read().split(b"\0")
    except OSError:
        return
    wanted = next((entry for entry in mine if entry.startswith(INSTANCE_MARKER + b"=")), None)
    if wanted is None or wanted == INSTANCE_MARKER + b"=":
        return
    me = _os.getpid()
    try:
        names = _os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as f:
                entries = f.read().split(b"\0")
        except OSError:
            continue
        if wanted in entries:
            what = "marked as this instance's"
        elif _parent_of(name) == me:
            # An orphan of a run, adopted by this agent (become_subreaper), whose environment
            # no longer carries the marker.
            what = "a run's orphan adopted by this agent"
        else:
            continue
        try:
            _os.kill(int(name), _signal.SIGKILL)
            log("killed process %s, %s, outside the runs' groups" % (name, what))
        except OSError:
            pass


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper(log):
    """Makes the agent the reaper of its runs' orphans (Linux 3.4+); whether it could.

    Outside a pid namespace (a `process` sandbox, a VM) an orphan of a run is re-parented to the
    system's init, so a daemon that both cleared its environment (`env -i`, no marker left) and
    left its session was found by nothing: neither the provider's termination, which follows
    markers and parent chains, nor this agent's dead-man switch. Re-parented to the agent, it
    stays in the sandbox's parent chain, and the agent must then reap what it adopts (the reaper
    thread of Children, as PID 1 does). ctypes is imported only here, off the namespace path.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0:
            return True
        why = _os.strerror(ctypes.get_errno())
    except Exception as err:  # noqa: BLE001 - no ctypes, no libc: the agent runs on without it
        why = err
    log("cannot become the reaper of runs' orphans: %s" % why)
    return False


# Signals Python ignores in itself that a child must get back at their default (subprocess's
# restore_signals): `yes | head` in a run must end by SIGPIPE.
_RESTORED_SIGNALS = tuple(getattr(_signal, n) for n in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(_signal, n))


# `sh -c THIS skyrepl-agent DIR ARGV...`: enters DIR, then becomes ARGV (same pid, session and
# group); a directory it cannot enter ends it with 126 and the shell's one-line reason.
_ENTER_THEN_EXEC = 'cd -- "$1" || exit 126; shift; exec "$@"'


class Child(object):
    """A started process: its pid and, once waited for, its returncode (subprocess's convention:
    negative for the signal that ended it)."""

    def __init__(self, pid, popen=None):
        self.pid = pid
        self.returncode = None
        # The subprocess.Popen behind it where posix_spawn could not be used (see Children).
        self.popen = popen


class Children(object):
    """Starts child processes and collects their exit statuses.

    Children start with posix_spawn (subprocess costs ~8 ms of imports at start-up; see the
    module docstring), stdin from /dev/null. posix_spawn has no working-directory argument, and
    changing the agent's own for the spawn would move every other thread there too (a lazy
    import could then load a module from a run's directory), so a child given a directory is
    started through `/bin/sh`, which enters it and execs the child: one more exec (about half a
    millisecond; a run in the agent's own directory is given none, see _start_run). Where
    posix_spawn or its setsid is missing, subprocess is used.

    Normally the agent's only children are the ones it starts, and a per-pid wait is all there
    is to it. As PID 1 of a pid namespace (the local sandbox), every orphan of the namespace is
    re-parented to the agent and must be reaped, or zombies pile up. A periodic
    `waitpid(-1, WNOHANG)` beside per-pid waits would race them: whichever reaps a run's shell
    first takes its status. So as PID 1 one reaper thread owns every wait: it blocks in
    `waitpid(-1)`, hands a tracked child's status to whoever waits for it, and drops the statuses
    of orphans. `spawn` registers the pid under the lock the reaper takes before it looks a pid
    up, so a child that exits at once is not mistaken for an orphan.
    """

    def __init__(self, log, reap_all):
        self.log = log
        self.reap_all = reap_all
        self.cond = Condition()
        self.statuses = {}
        self.posix_spawn = hasattr(_os, "posix_spawnp")
        if reap_all:
            start_thread(log, "reaper", self._reap)

    def spawn(self, argv, stdout, stderr, env, cwd=None, new_session=False):
        """Starts argv (looked up on PATH) with stdin from /dev/null. OSError, ValueError or
        TypeError if it cannot be started."""
        with self.cond:
            child = self._start(argv, stdout, stderr, env, cwd, new_session)
            if self.reap_all:
                self.statuses[child.pid] = None
                self.cond.notify_all()
        return child

    def _start(self, argv, stdout, stderr, env, cwd, new_session):
        if cwd is not None and not isdir(cwd):
            # As subprocess would: the caller learns it here, not from the child's exit.
            raise FileNotFoundError(errno.ENOENT, "no such directory", cwd)
        if self.posix_spawn:
            # stdout and stderr first: /dev/null must not take the place of one of them.
            actions = [
                (_os.POSIX_SPAWN_DUP2, stdout, 1),
                (_os.POSIX_SPAWN_DUP2, stderr, 2),
                (_os.POSIX_SPAWN_OPEN, 0, DEVNULL, _os.O_RDONLY, 0),
            ]
            spawned = argv if cwd is None else ["/bin/sh", "-c", _ENTER_THEN_EXEC, "skyrepl-agent", cwd] + list(argv)
            try:
                return Child(
                    _os.posix_spawnp(
                        spawned[0], spawned, env, file_actions=actions, setsid=new_session, setsigdef=_RESTORED_SIGNALS
                    )
                )
            except NotImplementedError:
                self.posix_spawn = False
        import subprocess

        with open(DEVNULL, "rb") as devnull:
            popen = subprocess.Popen(
                argv, stdin=devnull, stdout=stdout, stderr=stderr, cwd=cwd, env=env, start_new_session=new_session
            )
        return Child(popen.pid, popen)

    def wait(self, child):
        """Blocks until `child` exits; returns (exitCode, signal name)."""
        if self.reap_all:
            with self.cond:
                while self.statuses.get(child.pid) is None:
                    self.cond.wait()
                status = self.statuses.pop(child.pid)
        else:
            try:
                status = _os.waitpid(child.pid, 0)[1]
            except ChildProcessError:
                # Already reaped by someone else (SIGCHLD ignored): as subprocess, exit code 0.
                status = 0
        child.returncode = -_os.WTERMSIG(status) if _os.WIFSIGNALED(status) else _os.WEXITSTATUS(status)
        if child.popen is not None:
            # Waited for here: subprocess must not poll for it again.
            child.popen.returncode = child.returncode
        return split_returncode(child.returncode)

    def _reap(self):
        while True:
            try:
                pid, status = _os.waitpid(-1, 0)
            except ChildProcessError:
                # No child at all: wait for the next spawn, or for an orphan to be re-parented.
                # A child spawned since waitpid looked is waited for at once (its notify came
                # before this wait); an orphan may wait a second to be reaped.
                with self.cond:
                    if None not in self.statuses.values():
                        self.cond.wait(1.0)
                continue
            except OSError as err:
                self.log("waitpid failed: %s" % err)
                time.sleep(0.1)
                continue
            with self.cond:
                if pid in self.statuses:
                    self.statuses[pid] = status
                    self.cond.notify_all()


class HttpError(Exception):
    """The controller's answer could not be read as HTTP: it closed early or sent garbage."""


# Longest status or header line accepted, and most header lines: a misbehaving peer must not make
# the agent buffer without bound.
MAX_HTTP_LINE = 65536
MAX_HTTP_HEADERS = 100


class HttpResponse(object):
    """One answer: status, whether the connection ends with it, and a body read by length, by
    chunks, or until the connection closes."""

    def __init__(self, rfile, method):
        self._rfile = rfile
        line = self._line()
        if not line:
            raise HttpError("the connection closed before an answer")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise HttpError("not an HTTP status line: %r" % line[:80])
        self.status = int(parts[1])
        headers = {}
        while True:
            header = self._line()
            if header in (b"\r\n", b"\n"):
                break
            if not header:
                raise HttpError("the connection closed inside the headers")
            if len(headers) >= MAX_HTTP_HEADERS:
                raise HttpError("more than %d headers" % MAX_HTTP_HEADERS)
            name, colon, value = header.partition(b":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        self.headers = headers
        connection = headers.get(b"connection", b"").lower()
        self.chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        self.length = None
        if not self.chunked and b"content-length" in headers:
            text = headers[b"content-length"]
            if not text.isdigit():
                raise HttpError("bad Content-Length %r" % text[:40])
            self.length = int(text)
        if method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            self.chunked = False
            self.length = 0
        http10 = parts[0] == b"HTTP/1.0"
        self.will_close = (
            b"close" in connection
            or (http10 and b"keep-alive" not in connection)
            or (self.length is None and not self.chunked)
        )
        self._pending = b""
        self._done = self.length == 0

    def _line(self):
        line = self._rfile.readline(MAX_HTTP_LINE + 1)
        if len(line) > MAX_HTTP_LINE:
            raise HttpError("a line longer than %d bytes" % MAX_HTTP_LINE)
        return line

    def _exact(self, size):
        data = self._rfile.read(size)
        if len(data) < size:
            raise HttpError("the connection closed inside the body")
        return data

    def _next_chunk(self):
        """The next piece of body, or b"" once the body is complete."""
        if self._done:
            return b""
        if self.chunked:
            size_line = self._line()
            size_text = size_line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpError("bad chunk size %r" % size_line[:40])
            if size == 0:
                while self._line() not in (b"\r\n", b"\n", b""):
                    pass
                self._done = True
                return b""
            data = self._exact(size)
            self._line()
            return data
        if self.length is not None:
            data = self._rfile.read1(min(self.length, CHUNK)) if self.length > 0 else b""
            if not data:
                raise HttpError("the connection closed inside the body")
            self.length -= len(data)
            self._done = self.length == 0
            return data
        data = self._rfile.read1(CHUNK)
        if not data:
            self._done = True
        return data

    def read(self, amt=None):
        """The rest of the body, or at most `amt` bytes of it."""
        pieces = [self._pending]
        have = len(self._pending)
        while amt is None or have < amt:
            data = self._next_chunk()
            if not data:
                break
            pieces.append(data)
            have += len(data)
        body = b"".join(pieces)
        if amt is None or len(body) <= amt:
            self._pending = b""
            return body
        self._pending = body[amt:]
        return body[:amt]

    def readline(self):
        """The next line of the body, with its newline; b"" at the end."""
        while b"\n" not in self._pending:
            data = self._next_chunk()
            if not data:
                line, self._pending = self._pending, b""
                return line
            self._pending += data
        line, _, rest = self._pending.partition(b"\n")
        self._pending = rest
        return line + b"\n"


def _open_tcp(host, port, timeout):
    """socket.create_connection on _socket: each address of `host` in turn until one connects."""
    failure = None
    try:
        # As bytes: a str host goes through the idna codec, which imports re (~10 ms).
        name = host.encode("ascii")
    except UnicodeEncodeError:
        name = host.encode("idna")
    for family, kind, proto, _, address in _socket.getaddrinfo(name, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as err:
            sock.close()
            failure = err
    if failure is None:
        raise OSError("no address for %s" % host)
    raise failure


class _SocketReader(io.RawIOBase):
    """The raw stream under a buffered reader of a socket: socket.makefile("rb") on _socket."""

    def __init__(self, sock):
        self._sock = sock

    def readable(self):
        return True

    def readinto(self, buffer):
        return self._sock.recv_into(buffer)


class HttpConnection(object):
    """One HTTP/1.1 connection to the controller: what the agent needs of http.client, without
    importing it (it pulls in the email package, about a quarter of the agent's start-up, which
    every launch waits for)."""

    def __init__(self, host, port, timeout, ssl_context=None):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.sock = None
        self._rfile = None
        self._method = "GET"
        default = 443 if ssl_context is not None else 80
        name = "[%s]" % host if ":" in host else host
        self._host_header = name if port in (None, default) else "%s:%d" % (name, port)

    def _connect(self):
        port = self.port or (443 if self.ssl_context else 80)
        if self.ssl_context is not None:
            # ssl wraps only socket.socket: a controller behind TLS pays for importing socket.
            import socket

            sock = socket.create_connection((self.host, port), self.timeout)
        else:
            sock = _open_tcp(self.host, port, self.timeout)
        try:
            # Headers and body go out together or back to back: no waiting on Nagle.
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
                rfile = sock.makefile("rb")
            else:
                rfile = io.BufferedReader(_SocketReader(sock))
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._rfile = rfile

    def request(self, method, path, body=None, headers=None):
        if self.sock is None:
            self._connect()
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: " + self._host_header]
        for name, value in (headers or {}).items():
            lines.append("%s: %s" % (name, value))
        # A body is bytes, or a tuple of pieces that make it, sent one after another (_as_body).
        pieces = body if isinstance(body, tuple) else (() if body is None else (body,))
        size = sum(len(piece) for piece in pieces)
        if body is not None or method in ("POST", "PUT"):
            lines.append("Content-Length: %d" % size)
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._method = method
        if size <= 16384:
            self.sock.sendall(head + b"".join(pieces))
        else:
            self.sock.sendall(head)
            for piece in pieces:
                self.sock.sendall(piece)

    def getresponse(self):
        return HttpResponse(self._rfile, self._method)

    def close(self):
        rfile, sock = self._rfile, self.sock
        self._rfile = None
        self.sock = None
        if rfile is not None:
            rfile.close()
        if sock is not None:
            sock.close()


class Http(object):
    """Requests to the controller over a small pool of persistent connections.

    Connections are reused across requests and threads, so an output chunk costs one request on
    an open socket rather than a TCP handshake.
    """

    POOL_SIZE = 8

    def __init__(self, agent, cfg):
        url = cfg.endpoint
        self.agent = agent
        self.https = url.scheme == "https"
        self.host = url.host
        self.port = url.port
        self.prefix = url.path.rstrip("/")
        self.headers = {
            "Authorization": "Bearer " + cfg.token,
            "X-SkyREPL-Protocol": str(PROTOCOL),
            "X-SkyREPL-Instance": cfg.instance,
            "User-Agent": "skyrepl-agent/" + AGENT_VERSION,
        }
        self.idle = []
        self.lock = _thread.allocate_lock()
        self.ssl_context = None

    def connection(self, timeout):
        if not self.https:
            return HttpConnection(self.host, self.port, timeout)
        if self.ssl_context is None:
            # Only a controller behind TLS pays for importing ssl.
            import ssl

            self.ssl_context = ssl.create_default_context()
        return HttpConnection(self.host, self.port, timeout, self.ssl_context)

    def _take(self, timeout):
        with self.lock:
            conn = self.idle.pop() if self.idle else None
        if conn is None:
            return self.connection(timeout), False
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn, True

    def _give_back(self, conn):
        with self.lock:
            if len(self.idle) < self.POOL_SIZE:
                self.idle.append(conn)
                return
        conn.close()

    def request(self, method, path, body=None, content_type=None, timeout=None, encoding=None):
        """Returns (status, body). Raises OSError/HttpError on transport failure, Ending
        when the controller refused the token (the agent is then ending)."""
        return self.send(method, path, body, content_type, timeout, encoding).answer()

    def send(self, method, path, body=None, content_type=None, timeout=None, encoding=None):
        """Sends a request and returns its Exchange, whose answer is read later: requests on
        different connections can be in flight at once. Raises OSError/HttpError when it
        cannot be sent."""
        if timeout is None:
            timeout = self.agent.request_timeout
        headers = dict(self.headers)
        if content_type is not None:
            headers["Content-Type"] = content_type
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        return Exchange(self, method, self.prefix + path, body, headers, timeout)

    def open_events(self, timeout):
        """Opens the event stream; the caller reads lines from the response and closes conn."""
        conn = self.connection(timeout)
        headers = dict(self.headers)
        headers["Accept"] = "text/event-stream"
        headers["Cache-Control"] = "no-cache"
        try:
            conn.request("GET", self.prefix + "/v1/agent/events", headers=headers)
            resp = conn.getresponse()
            self._answered(resp.status)
        except BaseException:
            conn.close()
            raise
        return conn, resp

    def _answered(self, status):
        if 200 <= status < 300:
            self.agent.alive()
        elif status == 401:
            self.agent.end("the controller refused the token", EXIT_TOKEN_REFUSED, "refused")
            raise Ending()
        return status


class Exchange(object):
    """One request sent on a connection of the pool, its answer read by `answer` (once) or
    given up by `abandon`. `retried`: it was sent a second time, on a fresh connection."""

    def __init__(self, http, method, path, body, headers, timeout):
        self.http = http
        self.request = (method, path, body, headers)
        self.timeout = timeout
        self.retried = False
        self.conn, self.reused = http._take(timeout)
        try:
            self._send()
        except (OSError, HttpError) as err:
            self._again(err)

    def _send(self):
        method, path, body, headers = self.request
        try:
            self.conn.request(method, path, body=body, headers=headers)
        except BaseException:
            self.conn.close()
            raise

    def _again(self, err):
        """Sends the request again on a fresh connection after `err` on a pooled one, or raises
        `err`. A pooled connection the server closed while idle fails on first use; that is no
        answer from the controller, so one immediate retry on a fresh one is right. A time-out
        is an answer that did not come: retrying at once would double the wait."""
        if not self.reused or isinstance(err, _socket.timeout):
            raise err
        self.reused = False
        self.retried = True
        self.conn = self.http.connection(self.timeout)
        self._send()

    def _read(self):
        try:
            resp = self.conn.getresponse()
            return resp, resp.read()
        except BaseException:
            self.conn.close()
            raise

    def answer(self):
        """(status, body). Raises OSError/HttpError on transport failure, Ending when the
        controller refused the token (the agent is then ending)."""
        try:
            resp, data = self._read()
        except (OSError, HttpError) as err:
            self._again(err)
            resp, data = self._read()
        if resp.will_close:
            self.conn.close()
        else:
            self.http._give_back(self.conn)
        return self.http._answered(resp.status), data

    def abandon(self):
        """Closes the connection without reading the answer: the controller may still act on
        the request."""
        self.conn.close()


def _json_next(data):
    try:
        value = json_loads(data.decode("utf-8"))["next"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _as_body(pieces):
    """The body of an upload that goes as it was read: the piece itself when there is one, else
    the pieces as a tuple, which HttpConnection.request sends one after another. Joined into
    one object, every byte was copied once more: that copy was about half of a local agent's CPU
    while a run wrote as fast as it could (bench B4)."""
    return pieces[0] if len(pieces) == 1 else tuple(pieces)


def _prefix(pieces, size):
    """The first `size` bytes of `pieces`, as views."""
    out = []
    for piece in pieces:
        if size <= 0:
            break
        view = memoryview(piece)[:size]
        out.append(view)
        size -= len(view)
    return out


def _compress(pieces, encoding):
    import zlib  # only once output is large enough to compress: start-up stays lean

    compressor = zlib.compressobj(1, zlib.DEFLATED, ENCODING_WBITS[encoding])
    out = [compressor.compress(piece) for piece in pieces]
    out.append(compressor.flush())
    return b"".join(out)


def pack(pieces, size, encoding):
    """An upload's body and its Content-Encoding: compressed with `encoding` (a key of
    ENCODING_WBITS) when that pays, else as it is. The bytes come as the pieces they were read
    in, compressed one after another into one stream: joining them first would copy every byte
    once more."""
    if size < DEFLATE_MIN:
        return _as_body(pieces), None
    head = _prefix(pieces, DEFLATE_SAMPLE)
    sampled = sum(len(piece) for piece in head)
    sample = _compress(head, encoding)
    if len(sample) > DEFLATE_KEEP * sampled:
        return _as_body(pieces), None
    if sampled == size:
        return sample, encoding
    return _compress(pieces, encoding), encoding


class Upload(object):
    """One upload made ready: where it starts in its stream, how many bytes it carries, and the
    body as sent with its Content-Encoding."""

    def __init__(self, offset, pieces):
        self.offset = offset
        self.size = sum(len(piece) for piece in pieces)
        self.end = offset + self.size
        self.pieces = pieces
        self.payload = None
        self.encoding = None

    def pack(self, encoding):
        try:
            if encoding is not None:
                self.payload, self.encoding = pack(self.pieces, self.size, encoding)
        finally:
            # Should compressing fail (out of memory), the bytes go as they are.
            if self.payload is None:
                self.payload = _as_body(self.pieces)
            self.pieces = None


class OutStream(object):
    """One output stream of a run: what was read, what the controller acknowledged.

    Bytes are kept as the chunks `read` returned (no copying into one growing buffer, whose
    front would be moved on every acknowledgement). `held` is the offset of the first chunk;
    `next` is where the controller wants the next upload to start; `acked` the furthest point it
    ever acknowledged.
    """

    def __init__(self, name):
        self.name = name
        self.cond = Condition()
        self.chunks = deque()
        self.held = 0
        self.end = 0
        self.next = 0
        self.acked = 0
        self.eof = False
        self.abandoned = False
        self.complete = False

    def feed(self, data, agent):
        with self.cond:
            if self.abandoned:
                self.held += len(data)
            else:
                self.chunks.append(data)
            self.end += len(data)
            self.cond.notify_all()
            while not self.abandoned and not agent.stop_reports and self.end - self.acked > MAX_UNACKED:
                self.cond.wait(1.0)

    def set_eof(self):
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def take(self, limit, start=None):
        """The bytes to upload next, from `next` (or `start`, beyond it), at most `limit`, as the
        pieces they were read in (a whole read as itself). Called with the lock held."""
        if start is None:
            start = self.next
        want = min(limit, self.end - start)
        pieces = []
        pos = self.held
        for chunk in self.chunks:
            size = len(chunk)
            if pos + size <= start:
                pos += size
                continue
            lo = start - pos if start > pos else 0
            piece = chunk if lo == 0 and want >= size else memoryview(chunk)[lo:lo + want]
            pieces.append(piece)
            want -= len(piece)
            pos += size
            if want <= 0:
                break
        return start, pieces

    def acknowledge(self, position, log, run_id):
        """Applies a `next` from the controller. A `next` before the bytes still held cannot be
        served: the stream is then given up for this run (read and counted, not uploaded)."""
        with self.cond:
            if position > self.end:
                log("run %s %s: controller expects offset %d beyond the %d bytes read; resuming there"
                    % (run_id, self.name, position, self.end))
                position = self.end
            if position < self.held:
                log("run %s %s: controller asks for offset %d but bytes before %d are no longer held;"
                    " giving up uploading this stream" % (run_id, self.name, position, self.held))
                self.abandoned = True
                self.chunks.clear()
                self.held = self.end
                self.next = self.end
                self.cond.notify_all()
                return
            self.next = position
            if position > self.acked:
                self.acked = position
                keep_from = position - RETAIN
                while self.chunks and self.held + len(self.chunks[0]) <= keep_from:
                    self.held += len(self.chunks.popleft())
            self.cond.notify_all()


class Run(object):
    def __init__(self, run_id):
        self.id = run_id
        self.lock = _thread.allocate_lock()
        self.proc = None
        self.pgid = None
        self.stdout = OutStream("stdout")
        self.stderr = OutStream("stderr")
        self.wake_r = None
        self.wake_w = None
        self.readers_left = 0
        self.reason = None
        self.exited = False
        self.exit_code = None
        self.signal = None
        self.exited_event = Event()
        self.reported = Event()
        self.timers = []
        # Why the agent refused the run (a malformed `run` event), or None.
        self.refused = None

    def exit_payload(self):
        payload = {
            "runId": self.id,
            "exitCode": self.exit_code,
            "signal": self.signal,
            "reason": self.reason or "exited",
            "stdoutBytes": self.stdout.end,
            "stderrBytes": self.stderr.end,
        }
        if self.refused:
            payload["refused"] = self.refused
        return payload


def _positive_ms(value):
    """A JSON number of milliseconds in seconds, when it is positive and finite; None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not (0 < value < float("inf")):
        return None
    try:
        return value / 1000.0
    except OverflowError:
        # An integer beyond any float (JSON's integers have no limit): as long as the longest.
        return sys.float_info.max / 1000.0


def bounded_timings(heartbeat, deadman):
    """The heartbeat interval and dead-man window (seconds) the agent keeps for the ones asked
    for, and what it changed (for the log). The window is at most MAX_DEADMAN, and heartbeats
    come at least twice in it: one late heartbeat must not end a healthy run (the controller's
    settings hold it to the same rule)."""
    changed = []
    if deadman > MAX_DEADMAN:
        changed.append("dead-man window %gs cut to %gs" % (deadman, MAX_DEADMAN))
        deadman = MAX_DEADMAN
    kept = min(max(heartbeat, MIN_HEARTBEAT), deadman / 2.0)
    if kept != heartbeat:
        changed.append("heartbeat interval %gs made %gs" % (heartbeat, kept))
    return kept, deadman, changed


class Agent(object):
    def __init__(self, cfg, log, environment=None):
        self.cfg = cfg
        self.log = log
        self._set_timings(cfg.heartbeat_interval, cfg.deadman_timeout, "flags")
        # Largest output upload; the register answer may raise it.
        self.upload_limit = CHUNK
        # The compressed encoding output uploads use, if the controller takes one (its register
        # answer says).
        self.encoding = None
        self.last_ok = time.monotonic()
        self.http = Http(self, cfg)
        self.children = Children(log, _os.getpid() == 1 or become_subreaper(log))
        self.lock = _thread.allocate_lock()
        self.runs = {}
        self.seen = set()
        self.ending = False
        # Set when the agent ends: heartbeats and the event stream stop.
        self.end_event = Event()
        # Set when uploads and exit reports must stop too (at once, or after a `shutdown`
        # event's grace for the killed runs' last output).
        self.stop_event = Event()
        self.signalled = None
        # `environment`: the process's, when the caller has decoded it already (main has).
        env = dict(environment) if environment is not None else environ()
        # Runs are the user's code: they get the instance's environment, not the agent's secret.
        env.pop(TOKEN_VARIABLE, None)
        env.pop(RUN_VARIABLE, None)
        self.base_env = env
        self.output_fd = cfg.log_fd if cfg.log_fd is not None else 2
        # The agent never changes directory: a run in this one needs no shell to enter it.
        try:
            self.cwd = _os.getcwd()
        except OSError:
            self.cwd = None

    # -- timing ----------------------------------------------------------------------------

    @property
    def request_timeout(self):
        return max(2.0, min(30.0, self.deadman_timeout / 2.0))

    @property
    def events_timeout(self):
        # Pings come at least every heartbeat interval; three missed ones mean a dead stream.
        return max(2.0, 3.0 * self.heartbeat_interval)

    def backoff(self, attempt):
        cap = max(0.5, min(5.0, self.heartbeat_interval))
        return min(cap, 0.05 * (2 ** min(attempt, 10)))

    def _set_timings(self, heartbeat, deadman, source):
        self.heartbeat_interval, self.deadman_timeout, changed = bounded_timings(heartbeat, deadman)
        if changed:
            self.log("%s: %s" % (source, "; ".join(changed)))

    def alive(self):
        self.last_ok = time.monotonic()

    @property
    def stop_reports(self):
        return self.stop_event.is_set()

    def pause(self, seconds):
        """Sleeps, or returns early (True) once uploads and reports must stop."""
        return self.stop_event.wait(seconds)

    # -- start-up ----------------------------------------------------------------------------

    def main(self):
        for sig in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP):
            _signal.signal(sig, self._on_signal)
        self.log(
            "agent %s starting for %s (python %s, pid %d%s), controller %s"
            % (
                AGENT_VERSION,
                self.cfg.instance,
                "%d.%d.%d" % sys.version_info[:3],
                _os.getpid(),
                (", reaping orphans as pid 1" if _os.getpid() == 1 else ", reaping runs' orphans") if self.children.reap_all else "",
                self.cfg.url,
            )
        )
        if self.cfg.startup_run is not None:
            # Before registering: the run starts at once and its output is uploaded as it is
            # read, and the launch saves the round trip of being sent the run.
            self._on_run(self.cfg.startup_run, True)
        start_thread(self.log, "deadman", self._deadman_loop)
        start_thread(self.log, "boot", self._boot)
        # The main thread only turns signals into an ending: a Python signal handler runs on
        # this thread between bytecodes and must not take locks another frame here may hold.
        # It sleeps until a signal writes to the wakeup pipe (a sleep is resumed after the
        # handler, PEP 475), rather than waking ten times a second for the life of the instance;
        # the pause is only a backstop.
        wake, woken = _os.pipe()
        _os.set_blocking(woken, False)
        try:
            _signal.set_wakeup_fd(woken)
        except ValueError:
            # Not the process's main thread (an agent run inside another program): it polls.
            _os.close(wake)
            _os.close(woken)
            wake = None
        while True:
            sig = self.signalled
            if sig is not None:
                self.signalled = None
                self.end("received %s" % signal_name(sig), EXIT_OK, "signal")
            if wake is None:
                time.sleep(0.1)
            elif select.select([wake], [], [], 5.0)[0]:
                _os.read(wake, 512)

    def _on_signal(self, signum, frame):
        self.signalled = signum

    def _boot(self):
        if not self._register():
            return
        start_thread(self.log, "heartbeat", self._heartbeat_loop)
        self._events_loop()

    def _register(self):
        body = json_dumps(
            {
                "protocol": PROTOCOL,
                "instance": self.cfg.instance,
                "hostname": _socket.gethostname(),
                "pid": _os.getpid(),
                "agentVersion": AGENT_VERSION,
                "python": "%d.%d.%d" % sys.version_info[:3],
            }
        ).encode("utf-8")
        attempt = 0
        while not self.ending:
            try:
                status, data = self.http.request("POST", "/v1/agent/register", body, "application/json")
            except Ending:
                return False
            except (OSError, HttpError) as err:
                self.log("register failed: %s" % _describe(err))
            else:
                if 200 <= status < 300:
                    return self._registered(data)
                if status == 409:
                    self.end("the controller refused protocol %d" % PROTOCOL, EXIT_PROTOCOL_REFUSED, "refused")
                    return False
                self.log("register answered %d: %s" % (status, _snippet(data)))
            self.pause(self.backoff(attempt))
            attempt += 1
        return False

    def _registered(self, data):
        try:
            answer = json_loads(data.decode("utf-8")) if data.strip() else {}
        except ValueError:
            self.log("register answer is not JSON (%s); keeping the flags' timings" % _snippet(data))
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        protocol = answer.get("protocol", PROTOCOL)
        if protocol != PROTOCOL:
            self.end("the controller speaks protocol %r" % (protocol,), EXIT_PROTOCOL_REFUSED, "refused")
            return False
        interval = _positive_ms(answer.get("heartbeatIntervalMs"))
        deadman = _positive_ms(answer.get("deadmanTimeoutMs"))
        self._set_timings(
            self.heartbeat_interval if interval is None else interval,
            self.deadman_timeout if deadman is None else deadman,
            "register answer",
        )
        limit = answer.get("maxOutputBytes")
        if isinstance(limit, int) and not isinstance(limit, bool) and CHUNK <= limit <= MAX_UPLOAD:
            self.upload_limit = limit
        encodings = answer.get("outputEncodings")
        known = [e for e in encodings if isinstance(e, str) and e in ENCODING_WBITS] if isinstance(encodings, list) else []
        self.encoding = known[0] if known else None
        self.log(
            "registered; heartbeat every %gs, dead-man after %gs"
            % (self.heartbeat_interval, self.deadman_timeout)
        )
        return True

    # -- liveness ----------------------------------------------------------------------------

    def _deadman_loop(self):
        while not self.ending:
            silent = time.monotonic() - self.last_ok
            if silent >= self.deadman_timeout:
                self.end("no answer from the controller for %.1fs: dead-man switch" % silent, EXIT_OK, "deadman")
                return
            time.sleep(min(1.0, self.deadman_timeout - silent) + 0.001)

    def _heartbeat_loop(self):
        failing = False
        while not self.end_event.wait(self.heartbeat_interval):
            with self.lock:
                runs = sorted(self.runs)
            body = json_dumps({"runs": runs}).encode("utf-8")
            try:
                status, data = self.http.request("POST", "/v1/agent/heartbeat", body, "application/json")
            except (OSError, HttpError) as err:
                if not failing and not self.ending:
                    self.log("heartbeat failed: %s" % _describe(err))
                failing = True
                continue
            if 200 <= status < 300:
                if failing:
                    self.log("heartbeat answered again")
                failing = False
            else:
                if not failing:
                    self.log("heartbeat answered %d: %s" % (status, _snippet(data)))
                failing = True

    # -- events ------------------------------------------------------------------------------

    def _events_loop(self):
        attempt = 0
        while not self.ending:
            conn = None
            try:
                conn, resp = self.http.open_events(self.events_timeout)
                if 200 <= resp.status < 300:
                    # Back-off starts over only for a stream that carried something: one that
                    # a proxy closes at once must not turn into a reconnect storm.
                    if self._read_events(resp):
                        attempt = 0
                    if not self.ending:
                        self.log("event stream ended; reconnecting")
                else:
                    self.log("event stream answered %d: %s" % (resp.status, _snippet(resp.read(512))))
            except (OSError, HttpError) as err:
                if not self.ending:
                    self.log("event stream failed: %s" % _describe(err))
            finally:
                if conn is not None:
                    conn.close()
            if self.ending:
                return
            self.pause(self.backoff(attempt))
            attempt += 1

    def _read_events(self, resp):
        """Reads and dispatches events until the stream ends; returns whether anything came."""
        event = ""
        data = []
        received = False
        while not self.ending:
            raw = resp.readline()
            if not raw:
                break
            received = True
            self.alive()
            line = raw.rstrip(b"\n").rstrip(b"\r")
            if not line:
                if event or data:
                    self._dispatch(event or "message", "\n".join(data))
                event = ""
                data = []
                continue
            if line.startswith(b":"):
                continue
            field, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            text = value.decode("utf-8", "replace")
            if field == b"event":
                event = text
            elif field == b"data":
                data.append(text)
        return received

    def _dispatch(self, event, text):
        handler = {"run": self._on_run, "cancel": self._on_cancel, "shutdown": self._on_shutdown}.get(event)
        if handler is None:
            self.log("ignoring unknown event %r" % event)
            return
        try:
            payload = json_loads(text) if text.strip() else {}
        except ValueError:
            self.log("ignoring %s event with malformed data: %s" % (event, _snippet(text.encode("utf-8"))))
            return
        if not isinstance(payload, dict):
            self.log("ignoring %s event whose data is not an object" % event)
            return
        try:
            handler(payload)
        except Exception as err:
            self.log("error handling %s event: %r" % (event, err))

    def _on_run(self, payload, startup=False):
        run_id = payload.get("runId")
        if not isinstance(run_id, str) or not run_id:
            self.log("ignoring run event without a runId")
            return
        command = payload.get("command")
        env = payload.get("env")
        workdir = payload.get("workdir")
        max_ms = payload.get("maxDurationMs")
        problem = None
        if not isinstance(command, str):
            problem = "command must be a string"
        elif env is not None and not (
            isinstance(env, dict) and all(isinstance(v, str) for v in env.values())
        ):
            problem = "env must be an object of strings"
        elif workdir is not None and not isinstance(workdir, str):
            problem = "workdir must be a string"
        elif max_ms is not None and _positive_ms(max_ms) is None:
            problem = "maxDurationMs must be a positive number"
        if problem is not None and startup:
            # The controller sends the run as an event as well: that copy is started or refused.
            self.log("ignoring start-up run %s: %s" % (run_id, problem))
            return
        with self.lock:
            if run_id in self.seen or self.ending:
                return
            self.seen.add(run_id)
        if problem is not None:
            # Reported, or the controller would wait for the run forever.
            self._start_run(run_id, "", {}, "", None, problem)
            return
        # A relative workdir is taken from the default one: the agent's own cwd is no one's choice.
        workdir = join(self.cfg.workdir, workdir) if workdir else self.cfg.workdir
        self._start_run(run_id, command, env or {}, workdir, _positive_ms(max_ms))

    def _on_cancel(self, payload):
        run_id = payload.get("runId")
        with self.lock:
            run = self.runs.get(run_id) if isinstance(run_id, str) else None
        if run is not None and self._kill(run, "cancelled"):
            self.log("run %s: cancelled" % run_id)

    def _on_shutdown(self, payload):
        self.end("the controller asked to shut down", EXIT_OK, "shutdown")

    # -- runs --------------------------------------------------------------------------------

    def _start_run(self, run_id, command, env, workdir, max_duration, refused=None):
        run = Run(run_id)
        full_env = dict(self.base_env)
        full_env.update(env)
        with self.lock:
            self.runs[run_id] = run
        failure = None
        fds = []
        if refused:
            run.refused = refused
            failure = "refused the run: " + refused
        elif not isdir(workdir):
            failure = "workdir %r is not a directory" % workdir
        elif any("\0" in k or "=" in k or not k or "\0" in v for k, v in env.items()):
            failure = "env holds a name or value that cannot be passed to a process"
        else:
            try:
                out_r, out_w = _os.pipe()
                fds += [out_r, out_w]
                err_r, err_w = _os.pipe()
                fds += [err_r, err_w]
                wake_r, wake_w = _os.pipe()
                fds += [wake_r, wake_w]
                for fd in (out_r, err_r):
                    _grow_pipe(fd)
                # A run in the agent's own directory (the usual case: the default workdir, where
                # the providers start the agent) inherits it, sparing the shell that enters a
                # directory (about 0.5 ms of every run's start).
                cwd = None if workdir == self.cwd else workdir
                run.proc = self.children.spawn(["/bin/sh", "-c", "--", command], out_w, err_w, full_env, cwd, True)
            except (OSError, ValueError, TypeError) as err:
                failure = "cannot start: %s" % err
                for fd in fds:
                    _os.close(fd)
            else:
                # The child holds its own copies; the read ends reach EOF once every writer is gone.
                _os.close(out_w)
                _os.close(err_w)
                run.pgid = run.proc.pid
                run.wake_r, run.wake_w = wake_r, wake_w
                run.readers_left = 2

        if failure is not None:
            # Why the command never ran goes in the exit report too, so the controller can say it
            # (older controllers ignore the field and see exit 127).
            if run.refused is None:
                run.refused = failure
            self.log("run %s: %s" % (run_id, failure))
            run.stderr.feed(("skyrepl-agent: %s\n" % failure).encode("utf-8"), self)
            run.stdout.set_eof()
            run.stderr.set_eof()
            run.exit_code = FAILED_START_STATUS
            run.exited = True
            run.exited_event.set()
        else:
            self.log("run %s: started pid %d in %s" % (run_id, run.pgid, workdir))
            for stream, fd in ((run.stdout, out_r), (run.stderr, err_r)):
                start_thread(self.log, "read-" + stream.name, self._read_loop, run, stream, fd)
            if max_duration is not None:
                run.timers.append(Timer(self.log, max_duration, self._kill, run, "timed_out"))
        for stream in (run.stdout, run.stderr):
            start_thread(self.log, "upload-" + stream.name, self._upload_loop, run, stream)
        start_thread(self.log, "run", self._supervise, run)

    def _kill(self, run, reason):
        """Starts ending a run that is still going: SIGTERM to its group, SIGKILL after the grace.
        Returns False for a run whose shell already exited (its reason stays `exited`)."""
        with run.lock:
            if run.exited or run.pgid is None:
                return False
            if run.reason is None:
                run.reason = reason
                run.timers.append(Timer(self.log, KILL_GRACE, self._kill_hard, run))
        signal_group(run.pgid, _signal.SIGTERM)
        return True

    def _kill_hard(self, run):
        with run.lock:
            if run.exited:
                # The supervisor now owns the group (it clears lingering members itself).
                return
        signal_group(run.pgid, _signal.SIGKILL)

    def _read_loop(self, run, stream, fd):
        watch_both = select.poll()
        watch_both.register(fd, select.POLLIN)
        # The supervisor closes wake_w once the run's group is gone: wake_r then polls ready.
        watch_both.register(run.wake_r, select.POLLIN)
        watch_pipe = select.poll()
        watch_pipe.register(fd, select.POLLIN)
        draining = False
        try:
            while True:
                if draining:
                    # Whatever the run wrote is in the pipe now; a writer that escaped the group
                    # (setsid, a daemon) must not hold the run open.
                    if not watch_pipe.poll(0):
                        break
                else:
                    ready = watch_both.poll()
                    if not any(f == fd for f, _ in ready):
                        draining = True
                        continue
                data = _os.read(fd, READ_SIZE)
                if not data:
                    break
                stream.feed(data, self)
        except OSError as err:
            self.log("run %s %s: read failed: %s" % (run.id, stream.name, err))
        finally:
            _os.close(fd)
            stream.set_eof()
            with run.lock:
                run.readers_left -= 1
                last = run.readers_left == 0
            if last:
                _os.close(run.wake_r)

    def _upload_loop(self, run, stream):
        path = "/v1/agent/output?runId=%s&stream=%s&offset=" % (quote_component(run.id), stream.name)
        attempt = 0
        # Uploads sent and not yet answered, oldest first, each sent from where the one before
        # it ends: while one awaits its answer the next is packed and sent (UPLOADS_IN_FLIGHT).
        in_flight = deque()
        try:
            while True:
                upload = None
                with stream.cond:
                    while not in_flight:
                        if self.stop_reports:
                            return
                        if stream.abandoned or (stream.eof and stream.next >= stream.end):
                            stream.complete = True
                            stream.cond.notify_all()
                            return
                        if stream.next < stream.end:
                            break
                        stream.cond.wait()
                    if self.stop_reports:
                        return
                    start = in_flight[-1][0].end if in_flight else stream.next
                    if len(in_flight) < UPLOADS_IN_FLIGHT and not stream.abandoned and start < stream.end:
                        upload = Upload(*stream.take(self.upload_limit, start))
                if upload is not None:
                    upload.pack(self.encoding)
                    # A compressed upload names its inflated size, so the controller inflates it
                    # once, into exactly that much memory.
                    target = path + str(upload.offset)
                    if upload.encoding is not None:
                        target = "%s&size=%d" % (target, upload.size)
                    try:
                        exchange = self.http.send("POST", target, upload.payload, "application/octet-stream",
                                                  encoding=upload.encoding)
                    except (OSError, HttpError) as err:
                        outcome = self._failed(run, stream, upload, err)
                    else:
                        in_flight.append((upload, exchange))
                        continue
                else:
                    upload, exchange = in_flight.popleft()
                    outcome = self._answer(run, stream, upload, exchange)
                    if outcome == IN_ORDER:
                        attempt = 0
                        continue
                # What was sent after this upload was sent from where it should have ended: it
                # is given up, and uploads start again from the controller's `next`.
                while in_flight:
                    in_flight.popleft()[1].abandon()
                if outcome == MOVED:
                    attempt = 0
                    continue
                if self.pause(self.backoff(attempt)):
                    return
                attempt += 1
        finally:
            for _, exchange in in_flight:
                exchange.abandon()

    def _answer(self, run, stream, upload, exchange):
        """Reads the answer to `upload` and applies its `next`: IN_ORDER when the controller
        took it and expects next where the upload after it starts, MOVED when it expects other
        bytes (a 409, bytes it already had), FAILED when there is no usable answer."""
        offset = upload.offset
        try:
            status, data = exchange.answer()
        except (OSError, HttpError) as err:
            return self._failed(run, stream, upload, err)
        ok = 200 <= status < 300
        if ok or status == 409:
            position = _json_next(data)
            if position is None and ok:
                self.log("run %s %s: answer without a valid next; taking the chunk as stored"
                         % (run.id, stream.name))
                position = upload.end
            if position is not None:
                stream.acknowledge(position, self.log, run.id)
                # An upload sent a second time may have reached the controller after the one
                # sent behind it, which was then refused: that one goes again.
                if ok and position == upload.end and not exchange.retried:
                    return IN_ORDER
                # A 409 that does not move the stream would spin: that one backs off.
                if ok or position != offset:
                    return MOVED
        self.log("run %s %s: upload at %d answered %d: %s" % (run.id, stream.name, offset, status, _snippet(data)))
        return FAILED

    def _failed(self, run, stream, upload, err):
        """Logs an upload that got no answer (it could not be sent, or its answer not read)."""
        self.log("run %s %s: upload at %d failed: %s" % (run.id, stream.name, upload.offset, _describe(err)))
        return FAILED

    def _supervise(self, run):
        if run.proc is not None:
            code, sig = self.children.wait(run.proc)
            with run.lock:
                run.exited = True
                run.exit_code = code
                run.signal = sig
                timers = run.timers
                run.timers = []
            for timer in timers:
                timer.cancel()
            run.exited_event.set()
            self.log("run %s: shell ended (%s, %s)" % (run.id, _outcome(code, sig), run.reason or "exited"))
            self._clear_group(run)
            _os.close(run.wake_w)
        for stream in (run.stdout, run.stderr):
            with stream.cond:
                while not stream.complete and not self.stop_reports:
                    stream.cond.wait(0.5)
        self._report_exit(run)

    def _clear_group(self, run):
        """A run ends with its shell: what it left in its process group is ended too, or a
        background child holding the output pipe would keep the run open forever."""
        if not group_alive(run.pgid):
            return
        signal_group(run.pgid, _signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if not group_alive(run.pgid):
                return
        signal_group(run.pgid, _signal.SIGKILL)

    def _report_exit(self, run):
        body = json_dumps(run.exit_payload()).encode("utf-8")
        attempt = 0
        while not self.stop_reports:
            try:
                status, data = self.http.request("POST", "/v1/agent/exit", body, "application/json")
            except (OSError, HttpError) as err:
                self.log("run %s: exit report failed: %s" % (run.id, _describe(err)))
            else:
                if 200 <= status < 300:
                    self._reported(run)
                    return
                self.log("run %s: exit report answered %d: %s" % (run.id, status, _snippet(data)))
            if self.pause(self.backoff(attempt)):
                return
            attempt += 1

    def _reported(self, run):
        with self.lock:
            self.runs.pop(run.id, None)
        run.reported.set()
        self.log("run %s: exit reported (%s, %s, stdout %d bytes, stderr %d bytes)"
                 % (run.id, _outcome(run.exit_code, run.signal), run.reason or "exited",
                    run.stdout.end, run.stderr.end))

    # -- ending ------------------------------------------------------------------------------

    def end(self, why, status, kind):
        """Ends the agent (once): kills the runs, reports what the kind allows, ends the
        instance per --shutdown (except on a signal), exits. Runs on its own thread so that no
        caller's state (a blocked request, a held lock) can delay the dead-man switch."""
        with self.lock:
            if self.ending:
                return
            self.ending = True
            runs = list(self.runs.values())
        if kind != "shutdown":
            self.stop_event.set()
        self.end_event.set()
        self.log("ending: %s" % why)
        start_thread(self.log, "end", self._end, runs, status, kind)

    def _end(self, runs, status, kind):
        try:
            reason = "deadman" if kind == "deadman" else "cancelled"
            for run in runs:
                self._kill(run, reason)
            deadline = time.monotonic() + KILL_GRACE
            while time.monotonic() < deadline and any(r.pgid and group_alive(r.pgid) for r in runs):
                time.sleep(0.05)
            for run in runs:
                if run.pgid is not None:
                    signal_group(run.pgid, _signal.SIGKILL)
            if kind in ("deadman", "shutdown"):
                kill_marked(self.log)
            for run in runs:
                run.exited_event.wait(max(0.0, deadline + 1.0 - time.monotonic()))
            if kind == "shutdown":
                wait_until = time.monotonic() + SHUTDOWN_REPORT_WAIT
                for run in runs:
                    run.reported.wait(max(0.0, wait_until - time.monotonic()))
                self.stop_event.set()
            elif kind == "deadman":
                self._report_once(runs)
            if kind != "signal":
                self._shutdown_instance()
        except Exception as err:
            self.log("internal error while ending: %r" % (err,))
        self.log("exiting with status %d" % status)
        _os._exit(status)

    def _report_once(self, runs):
        # The controller has been silent for the whole window: a live one answers an exit in
        # milliseconds, so the instance is not kept up long waiting for a dead one.
        deadline = time.monotonic() + DEADMAN_REPORT_BUDGET
        for run in runs:
            if run.reported.is_set():
                continue
            left = deadline - time.monotonic()
            if left <= 0.05:
                self.log("run %s: no time left to report its exit" % run.id)
                continue
            body = json_dumps(run.exit_payload()).encode("utf-8")
            try:
                status, _ = self.http.request("POST", "/v1/agent/exit", body, "application/json", timeout=left)
            except (Ending, OSError, HttpError) as err:
                self.log("run %s: last exit report failed: %s" % (run.id, _describe(err)))
            else:
                self.log("run %s: last exit report answered %d" % (run.id, status))

    def _shutdown_instance(self):
        mode = self.cfg.shutdown
        if mode == "exit":
            return
        if mode.startswith("command:"):
            command = mode[len("command:"):]
            self.log("running shutdown command: %s" % command)
            self._run_quietly(["/bin/sh", "-c", command])
            return
        for argv in (["poweroff"], ["shutdown", "-h", "now"]):
            self.log("powering off: %s" % " ".join(argv))
            if self._run_quietly(argv) == 0:
                return
        self.log("could not power the machine off")

    def _run_quietly(self, argv):
        try:
            proc = self.children.spawn(argv, self.output_fd, self.output_fd, self.base_env)
        except (OSError, ValueError, TypeError) as err:
            self.log("cannot run %s: %s" % (argv[0], err))
            return None
        code, sig = self.children.wait(proc)
        if code != 0:
            self.log("%s ended with %s" % (argv[0], _outcome(code, sig)))
        return code


def _grow_pipe(fd):
    # Bigger pipes mean fewer, larger reads and uploads for a chatty run; not essential.
    try:
        import fcntl

        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
    except (ImportError, OSError):
        pass


def _outcome(code, sig):
    return "signal %s" % sig if sig is not None else "exit code %s" % code


def _describe(err):
    text = str(err)
    return "%s: %s" % (type(err).__name__, text) if text else type(err).__name__


def _snippet(data):
    return data[:200].decode("utf-8", "replace").replace("\n", " ")


def _prepare_fds():
    """Descriptors as a child should find them: 0-2 open (a child's stdout and stderr are
    dup2'd onto 1 and 2, so a pipe must never be given one of those numbers), and everything the
    agent inherited above 2 closed on exec (what subprocess's close_fds did)."""
    for fd in (0, 1, 2):
        try:
            _os.fstat(fd)
        except OSError:
            _os.set_inheritable(_os.open(DEVNULL, _os.O_RDWR), True)
    for listing in ("/proc/self/fd", "/dev/fd"):
        try:
            names = _os.listdir(listing)
        except OSError:
            continue
        for name in names:
            if name.isdigit() and int(name) > 2:
                try:
                    _os.set_inheritable(int(name), False)
                except OSError:
                    pass  # the listing's own descriptor, closed by now
        return


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    try:
        env = environ()
        cfg = parse_args(argv, env)
    except BadArgs as err:
        sys.stderr.write("skyrepl-agent: %s (see --help)\n" % err)
        return EXIT_BAD_ARGS
    if cfg is None:
        sys.stdout.write(USAGE + "\n")
        return EXIT_OK
    if cfg.shutdown == "poweroff" and env.get(POWEROFF_VARIABLE) != "1":
        sys.stderr.write(
            "skyrepl-agent: refusing --shutdown poweroff without %s=1 (only a cloud bootstrap sets it)\n"
            % POWEROFF_VARIABLE
        )
        return EXIT_BAD_ARGS
    _prepare_fds()
    # Inherited as ignored, SIGCHLD would make the kernel discard every child's exit status (the
    # waits would never return) and runs would inherit it too.
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    if cfg.log:
        try:
            cfg.log_fd = _os.open(cfg.log, _os.O_WRONLY | _os.O_APPEND | _os.O_CREAT, 0o600)
        except OSError as err:
            sys.stderr.write("skyrepl-agent: cannot open --log %r: %s\n" % (cfg.log, err))
            return EXIT_BAD_ARGS
    agent = Agent(cfg, Log(cfg.log_fd if cfg.log_fd is not None else 2), env)
    agent.main()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
