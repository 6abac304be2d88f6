import { agentArguments } from "@skyrepl/core"

/**
 * The bootstrap: a POSIX shell script that `orbctl run -m NAME -u root sh -s` reads from its
 * stdin. It installs the agent (carried inside the script, base64) and starts it detached.
 * Everything it prints goes to BOOTSTRAP_LOG in the machine, which stays there for diagnosis;
 * only the reason of a failure is also written to the caller's stderr.
 */

export const BOOTSTRAP_LOG = "/tmp/bootstrap.log"

/** Where the agent lives in the machine, below the (root) user's home. */
export const AGENT_DIR = ".skyrepl"

export interface BootstrapInput {
  readonly name: string
  /** The URL as the machine must call it (see `agentUrlFor`). */
  readonly agentUrl: string
  /**
   * The URL as the controller gave it, used when the host in `agentUrl` does not resolve inside
   * the machine: then the machine is not on OrbStack's network (a plain process sharing this
   * host's network, as the emulator's process-group fallback is), and loopback is this host.
   */
  readonly directUrl: string
  readonly token: string
  readonly heartbeatIntervalMs: number
  readonly deadmanTimeoutMs: number
  /** The agent's source. */
  readonly agent: Buffer
}

/** Single-quotes a word for sh: nothing inside single quotes is special but the quote itself. */
export const shellQuote = (word: string): string => `'${word.replaceAll("'", `'\\''`)}'`


/**
 * How the agent ends its machine (dead-man switch, `shutdown`, a refused token). Never
 * `poweroff`: that reaches whatever kernel the "machine" shares, and under the orbctl emulator
 * that is the host's. Stopping through OrbStack is what a power-off would achieve (the machine
 * stops; the sweep deletes it), and OrbStack's own guest tools provide `orbctl` inside
 * machines; `mac orbctl` runs it on the Mac when a machine lacks them.
 */
export const shutdownCommand = (name: string): string =>
  `command:orbctl stop ${shellQuote(name)} >/dev/null 2>&1 || mac orbctl stop ${shellQuote(name)}`

const hostOf = (url: string): string => {
  try {
    return new URL(url).hostname
  } catch {
    return url
  }
}

const base64Lines = (data: Buffer): string => (data.toString("base64").match(/.{1,76}/g) ?? []).join("\n")

export const bootstrapScript = (input: BootstrapInput): string => {
  const q = shellQuote
  const agentArgs = agentArguments(
    input.name,
    { agentUrl: "", heartbeatIntervalMs: input.heartbeatIntervalMs, deadmanTimeoutMs: input.deadmanTimeoutMs },
    { shutdown: shutdownCommand(input.name), withUrl: false }
  )
    .map(q)
    .join(" ")
  return `# SkyREPL bootstrap of ${input.name}: install the agent, start it detached.
exec 3>&2 >>${BOOTSTRAP_LOG} 2>&1
echo "== skyrepl bootstrap of "${q(input.name)}", $(date -u +%Y-%m-%dT%H:%M:%SZ 2>/dev/null)"
fail() { echo "bootstrap failed: $1"; echo "$1" >&3; exit 1; }
# Only a cloud bootstrap may let the agent power off; here the machine is stopped through OrbStack.
unset SKYREPL_AGENT_ALLOW_POWEROFF
home=\${HOME:-/root}
dir="$home/${AGENT_DIR}"
py=$(command -v python3 2>/dev/null)
# 1: too old; 126/127: on PATH but not runnable (a dangling link), which is as good as absent.
if [ -z "$py" ]; then checked=127; else "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)'; checked=$?; fi
case "$checked" in
  0) ;;
  1) fail "$py is older than Python 3.8, which the agent needs (see ${BOOTSTRAP_LOG})" ;;
  *) fail "python3 not found in the machine: the agent needs Python 3.8 or newer (see ${BOOTSTRAP_LOG})" ;;
esac
mkdir -p "$dir" && chmod 700 "$dir" || fail "cannot create $dir (see ${BOOTSTRAP_LOG})"
"$py" -c 'import base64, sys; sys.stdout.buffer.write(base64.b64decode(sys.stdin.read()))' >"$dir/skyrepl_agent.py.new" <<'SKYREPL_AGENT_SOURCE' || fail "cannot write the agent to $dir (see ${BOOTSTRAP_LOG})"
${base64Lines(input.agent)}
SKYREPL_AGENT_SOURCE
mv -f "$dir/skyrepl_agent.py.new" "$dir/skyrepl_agent.py" || fail "cannot install the agent in $dir (see ${BOOTSTRAP_LOG})"
cd "$home" 2>/dev/null || cd /
url=${q(input.agentUrl)}
if [ "$url" != ${q(input.directUrl)} ] && ! "$py" -c 'import socket, sys; socket.getaddrinfo(sys.argv[1], None)' ${q(hostOf(input.agentUrl))} 2>/dev/null; then
  echo ${q(`${hostOf(input.agentUrl)} does not resolve here: calling ${input.directUrl} directly`)}
  url=${q(input.directUrl)}
fi
# Detached: its own session, no descriptor of this script's caller, so orbctl returns at once.
SKYREPL_AGENT_TOKEN=${q(input.token)} setsid "$py" -S "$dir/skyrepl_agent.py" --url "$url" ${agentArgs} --workdir "$home" --log "$dir/agent.log" </dev/null >>${BOOTSTRAP_LOG} 2>&1 3>&- &
pid=$!
# An agent that cannot start (bad arguments, an unreadable log) is gone within this moment.
sleep 0.2
state=$(sed 's/.*) //' /proc/$pid/stat 2>/dev/null | cut -c1)
case "$state" in
  ""|Z|X) fail "the agent exited at once (see $dir/agent.log and ${BOOTSTRAP_LOG})" ;;
esac
echo "agent started: pid $pid"
`
}
