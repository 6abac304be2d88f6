#!/usr/bin/env python3
"""SkyREPL's fork server, for sandboxes on the controller's own machine (the local provider).

A sandbox starts about 12 ms sooner, and costs that much less CPU, when it is forked from an
interpreter that has loaded the agent already than when a new interpreter starts the agent. The
local provider keeps one such process per controller (`python3 -S skyrepl_fork_server.py
--agent AGENT`, where AGENT is skyrepl_agent.py or a compiled copy of it) and asks it for each
sandbox over its stdin, one line per request (`ID JSON`); it answers each on its stdout, in
order, with the pid of the sandbox's root. It ends when its stdin ends, which its controller's exit brings
about, once every sandbox it forked is past the point where it needs its server (`pending`). Each forked sandbox runs the agent's own `main`, as an exec'd one does.

What a forked sandbox must look like is what `unshare --pid --fork --mount-proc --uts --ipc
--kill-child` and the hostname step make of an exec'd one: a root process outside the
namespaces, in its own session, whose one child is pid 1 inside them and runs the agent, both
carrying the sandbox's variables in /proc/PID/environ, which is how every scan tells sandboxes
apart. A fork shares its parent's initial environment, so the server is started with room to
spare in it (SKYREPL_FORK_SERVER_ROOM) and each sandbox writes its own variables over that
memory, where /proc reads them.

Not shipped to cloud instances: only the local provider forks. Python 3.8+, standard library;
ctypes, since Python before 3.12 has no os.unshare, and mount, prctl and the C library's
environment have no Python binding at all.
"""

import _signal
import marshal
import select as _select
import posix as _os
import sys
import time as _time

USAGE = "usage: skyrepl_fork_server.py --agent AGENT"

# The agent's module, loaded by `serve`: its JSON and its `main`, which each sandbox runs.
agent = None


def load_agent(path):
    """The agent as the module `skyrepl_agent`, from its source or a compiled copy."""
    with open(path, "rb") as f:
        data = f.read()
    # A .pyc is a 16-byte header (magic, flags, source stamp) and the marshalled code.
    code = marshal.loads(data[16:]) if path.endswith(".pyc") else compile(data, path, "exec")
    module = type(sys)("skyrepl_agent")
    module.__file__ = path
    sys.modules["skyrepl_agent"] = module
    exec(code, module.__dict__)
    return module


CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NAME = 1, 15
# Command names, which the controller's scans key their memory of a process's variables on:
# a new name tells them the variables were written after the fork.
ROOT_NAME, AGENT_NAME = b"skyrepl-sandbox", b"skyrepl-agent"


class SandboxFailed(Exception):
    """A step of entering the sandbox failed; the message says which and why."""


def _environ_bounds():
    """Where this process's initial environment lies (fields 50 and 51 of /proc/self/stat; the
    first after the command name is field 3). A fork inherits the same addresses."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[47]), int(fields[48])


class _Libc(object):
    """The C library calls a forked sandbox needs, and where the server's environment lies."""

    def __init__(self):
        import ctypes

        self.ctypes = ctypes
        self.lib = ctypes.CDLL(None, use_errno=True)
        self.environ_start, self.environ_end = _environ_bounds()

    def call(self, what, name, *args):
        if getattr(self.lib, name)(*args) != 0:
            err = self.ctypes.get_errno()
            raise SandboxFailed("%s: %s" % (what, _os.strerror(err)))

    def set_name(self, name):
        self.lib.prctl(PR_SET_NAME, self.ctypes.c_char_p(name), 0, 0, 0)

    def rewrite_environ(self, block, env):
        """Writes `block` over this process's initial environment, where /proc/PID/environ
        reads it, and makes the C library's environment `env` (the old one points into it)."""
        start, end = self.environ_start, self.environ_end
        if len(block) > end - start:
            raise SandboxFailed("the sandbox's environment (%d bytes) does not fit in %d" % (len(block), end - start))
        self.ctypes.memmove(start, block + b"\0" * (end - start - len(block)), end - start)
        self.lib.clearenv()
        for name, value in env.items():
            self.lib.setenv(self.ctypes.c_char_p(name), self.ctypes.c_char_p(value), 1)


def _sandbox_environ(env):
    encoding = sys.getfilesystemencoding()
    out = {}
    for name, value in env.items():
        out[name.encode(encoding, "surrogateescape")] = value.encode(encoding, "surrogateescape")
    block = b"".join(name + b"=" + value + b"\0" for name, value in out.items())
    return out, block


def _make_dirs(path):
    """mkdir -p, each new directory the owner's alone."""
    try:
        _os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        _make_dirs(path.rsplit("/", 1)[0])
        _os.mkdir(path, 0o700)


def _enter_sandbox(libc, request, server_pid, started):
    """In the sandbox's root, just forked: its directory (`cwd`, made here, the console log's
    beside it), then everything the exec'd sandbox had before its namespaces, then the
    namespaces. Returns the pid of the namespace's init, or None when the
    sandbox has none (a plain process group) and this process is the agent."""
    _os.setsid()
    # As an exec'd interpreter has them (the fork server ignores both).
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    _make_dirs(request["cwd"])
    console = _os.open(request["console"], _os.O_WRONLY | _os.O_APPEND | _os.O_CREAT, 0o600)
    devnull = _os.open("/dev/null", _os.O_RDONLY)
    _os.dup2(devnull, 0)
    _os.dup2(console, 1)
    _os.dup2(console, 2)
    # Every other descriptor goes (the other sandboxes' `pending` ends among them); `started`
    # stays open until the check below.
    _os.closerange(3, started)
    _os.closerange(started + 1, 65536)
    _os.chdir(request["cwd"])
    env, block = _sandbox_environ(request["env"])
    libc.rewrite_environ(block, env)
    _os.environ.clear()
    _os.environ.update(env)
    libc.set_name(ROOT_NAME)
    # The controller takes a fork server that ended mid-request to have started nothing: a
    # sandbox that lost its fork server before it carried its variables must not start.
    if _os.getppid() != server_pid:
        _os._exit(1)
    # Past the point where the server's end matters: closing this tells the server so.
    _os.close(started)
    mode = request["namespaces"]
    if mode == "none":
        return None
    flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC
    if mode == "user":
        uid, gid = _os.getuid(), _os.getgid()
        libc.call("unshare", "unshare", flags | CLONE_NEWUSER)
        for path, text in (("setgroups", "deny"), ("uid_map", "0 %d 1" % uid), ("gid_map", "0 %d 1" % gid)):
            with open("/proc/self/" + path, "w") as f:
                f.write(text)
    else:
        libc.call("unshare", "unshare", flags)
    # Open in the root until it ends: how the init tells that its root is alive, since the
    # root, outside the pid namespace, has no pid there to ask about.
    alive_r, alive_w = _os.pipe()
    pid = _os.fork()
    if pid != 0:
        _os.close(alive_r)
        return pid
    # The namespace's init, which runs the agent: it dies with the root, as --kill-child has it.
    libc.lib.prctl(PR_SET_PDEATHSIG, _signal.SIGKILL, 0, 0, 0)
    _os.close(alive_w)
    _os.set_blocking(alive_r, False)
    try:
        ended = _os.read(alive_r, 1) == b""
    except BlockingIOError:
        ended = False
    if ended:  # before the signal was asked for
        _os._exit(1)
    _os.close(alive_r)
    libc.set_name(AGENT_NAME)
    libc.call("mount / private", "mount", b"none", b"/", None, MS_REC | MS_PRIVATE, None)
    libc.call("mount /proc", "mount", b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    # sethostname(2), not /proc/sys/kernel/hostname: inside a user namespace only the call is
    # allowed (the file wants root of the whole machine).
    name = request["name"].encode()
    libc.call("sethostname", "sethostname", name, len(name))
    return None


def _wait_and_pass_on(pid):
    """The root's part once its init runs, as unshare --fork does it: wait, then end the same
    way (an init killed by a signal makes the root kill itself with it)."""
    _, status = _os.waitpid(pid, 0)
    if _os.WIFSIGNALED(status):
        sig = _os.WTERMSIG(status)
        _signal.signal(sig, _signal.SIG_DFL)
        _os.kill(_os.getpid(), sig)
    _os._exit(_os.WEXITSTATUS(status) if _os.WIFEXITED(status) else 1)


def _sandbox(libc, line, server_pid, started):
    """The forked child, `line` its request as JSON, `started` the descriptor it closes once it
    no longer needs its server: never returns."""
    code = 1
    try:
        request = agent.json_loads(line.decode("utf-8"))
        init = _enter_sandbox(libc, request, server_pid, started)
        if init is not None:
            _wait_and_pass_on(init)
        code = agent.main(request["argv"])
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    except BaseException as err:  # anything at all: report it in the console log, never return
        try:
            _os.write(2, ("skyrepl-agent: cannot start the sandbox: %s\n" % agent._describe(err)).encode("utf-8", "replace"))
        except OSError:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        _os._exit(code)


# Requests, `ID JSON` a line, are read into one buffer that is never reallocated and wiped as
# each is taken, and only the forked sandbox decodes its JSON: a request holds the sandbox's
# token, and every later sandbox inherits this process's memory, freed blocks and all.
REQUEST_BUFFER = 1 << 20

# A pipe's read end per sandbox forked and not yet past its check of its server (see
# _enter_sandbox): its write end closes once it is. A sandbox that finds its server gone before
# then does not start, so the server, told to end (its stdin ends: the controller's process may
# exit right after a spawn returned), first waits for these, up to PENDING_WAIT seconds. Without
# that a sandbox forked just before its controller exited could end unstarted.
pending = []
PENDING_WAIT = 10.0


def _settle(timeout):
    """Drops the sandboxes of `pending` that are past their check, waiting up to `timeout`."""
    deadline = _time.monotonic() + timeout
    while pending:
        left = deadline - _time.monotonic()
        ready, _, _ = _select.select(pending, [], [], max(0.0, left))
        for fd in ready:
            pending.remove(fd)
            _os.close(fd)
        if not ready and left <= 0:
            return


def serve(agent_path):
    """Forks a sandbox per request line on stdin until stdin ends."""
    global agent
    agent = load_agent(agent_path)
    libc = _Libc()
    # Sandboxes are not waited for here: each is its own session and outlives this process.
    _signal.signal(_signal.SIGCHLD, _signal.SIG_IGN)
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    server_pid = _os.getpid()
    room = libc.environ_end - libc.environ_start
    _os.write(1, (agent.json_dumps({"ready": True, "room": room}) + "\n").encode())
    buf = bytearray(REQUEST_BUFFER)
    view = memoryview(buf)
    ctypes = libc.ctypes
    address = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
    end = 0
    skipping = False  # the rest of a line longer than the buffer
    while True:
        if end == len(buf):
            if not skipping:
                _os.write(1, (agent.json_dumps({"error": "a request longer than %d bytes" % len(buf)}) + "\n").encode())
            skipping = True
            ctypes.memset(address, 0, end)
            end = 0
        count = _os.readv(0, [view[end:]])
        if count == 0:
            _settle(PENDING_WAIT)
            return 0
        end += count
        start = 0
        while True:
            nl = buf.find(b"\n", start, end)
            if nl < 0:
                break
            if skipping:
                skipping = False
            else:
                answer = _fork_one(libc, buf, start, nl, server_pid)
                _os.write(1, (agent.json_dumps(answer) + "\n").encode())
            start = nl + 1
        # What was taken is wiped; what is left of a line moves to the front.
        left = end - start
        ctypes.memmove(address, address + start, left)
        ctypes.memset(address + left, 0, end - left)
        end = left


def _fork_one(libc, buf, start, nl, server_pid):
    space = buf.find(b" ", start, nl)
    digits = bytes(buf[start:space]) if space > start else b""
    if not digits.isdigit():
        return {"error": "a request is `ID JSON` on one line"}
    request_id = int(digits)
    try:
        started_r, started_w = _os.pipe()
    except OSError as err:
        return {"id": request_id, "error": agent._describe(err)}
    try:
        pid = _os.fork()
    except OSError as err:
        _os.close(started_r)
        _os.close(started_w)
        return {"id": request_id, "error": agent._describe(err)}
    if pid == 0:
        _os.close(started_r)
        _sandbox(libc, bytes(buf[space + 1:nl]), server_pid, started_w)
    _os.close(started_w)
    pending.append(started_r)
    # Those already past their check are forgotten at once, so descriptors do not pile up.
    _settle(0)
    return {"id": request_id, "pid": pid}


def main(argv):
    if len(argv) != 2 or argv[0] != "--agent":
        sys.stderr.write(USAGE + "\n")
        return 2
    return serve(argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
