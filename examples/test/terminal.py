# Runs a program on a pseudo-terminal, as a person at a terminal would use it: what arrives on
# stdin is typed into it, what it shows comes out on stdout. Exits with the program's status.
# Python because it is already required (the on-instance agent) and has pty in its standard
# library; Node has none.
import fcntl
import os
import pty
import select
import struct
import sys
import termios

argv = sys.argv[1:]
pid, terminal = pty.fork()
if pid == 0:
    # A real size: a line editor wraps and redraws by it.
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    os.execvp(argv[0], argv)

typing = True
while True:
    ready, _, _ = select.select([terminal] + ([0] if typing else []), [], [])
    if terminal in ready:
        try:
            shown = os.read(terminal, 65536)
        except OSError:
            # EIO: the program has closed its side of the terminal.
            shown = b""
        if not shown:
            break
        os.write(1, shown)
    if 0 in ready:
        typed = os.read(0, 65536)
        if typed:
            os.write(terminal, typed)
        else:
            typing = False

_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
