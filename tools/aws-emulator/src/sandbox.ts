import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { chmodSync, existsSync, lstatSync, mkdirSync, realpathSync, symlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"

/**
 * Every program that could power a machine off. Inside a sandbox each of them is our fake, both
 * first on PATH and bind-mounted over the real files, so no spelling reaches the host.
 */
export const POWER_PROGRAMS = ["poweroff", "shutdown", "halt", "reboot", "telinit", "systemctl"] as const

const PROGRAM_DIRS = ["/sbin", "/usr/sbin", "/bin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] as const

/** Present in the fake's text; the sandbox checks for it before it runs anything. */
export const FAKE_MARKER = "SKYREPL-EMULATOR-FAKE-POWER"

const STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

const shellQuote = (text: string): string => `'${text.replace(/'/g, `'"'"'`)}'`

/**
 * The stand-in for every power program. It only records what was asked (program and
 * arguments) in the instance's request file; the harness turns a power-off into what EC2 would
 * do. `systemctl` verbs that do not end the machine succeed quietly, as does `shutdown -c`.
 */
const fakeScript = (requests: string): string =>
  [
    "#!/bin/sh",
    `# ${FAKE_MARKER}: stands in for ${POWER_PROGRAMS.join(", ")} inside an AWS emulator sandbox,`,
    "# so that nothing run there can power off, halt or reboot the machine that runs the emulator.",
    'name=${0##*/}',
    'case "$name" in',
    "  systemctl)",
    '    case " $* " in',
    '      *" poweroff "*|*" halt "*|*" reboot "*|*" kexec "*|*" suspend "*|*" hibernate "*|*" emergency "*|*" rescue "*) ;;',
    "      *) exit 0 ;;",
    "    esac ;;",
    "  shutdown)",
    '    case " $* " in *" -c "*) exit 0 ;; esac ;;',
    "  telinit)",
    '    case "${1:-}" in 0|6) ;; *) exit 0 ;; esac ;;',
    "esac",
    `printf '%s %s\\n' "$name" "$*" >> ${shellQuote(requests)}`,
    "exit 0",
    ""
  ].join("\n")

/**
 * pid 1 of the sandbox. It hides the power programs and the host's init sockets behind fakes
 * (checking that each fake took), gives the instance its own /opt, runs the user-data as
 * cloud-init would (root, a minimal environment, in the background), then waits for its stdin
 * to close: the harness holds the other end, so the sandbox cannot outlive the harness.
 */
const initScript = [
  "set -eu",
  'fake=$1 fakebin=$2 opt=$3 host=$4 userdata=$5 log=$6',
  "shift 6",
  "mount --make-rprivate /",
  'printf %s "$host" > /proc/sys/kernel/hostname',
  'for target in "$@"; do',
  '  mount --bind "$fake" "$target"',
  `  grep -q ${FAKE_MARKER} "$target" || { echo "sandbox: the fake did not take over $target" >&2; exit 97; }`,
  "done",
  "for socketdir in /run/systemd /run/dbus /run/initctl; do",
  '  if [ -d "$socketdir" ]; then mount -t tmpfs -o size=64k,mode=755 tmpfs "$socketdir"; fi',
  "done",
  "if [ -e /proc/sysrq-trigger ]; then mount --bind /dev/null /proc/sysrq-trigger; fi",
  'mount --bind "$opt" /opt',
  `resolved=$(PATH="$fakebin:${STANDARD_PATH}" command -v poweroff)`,
  '[ "$resolved" = "$fakebin/poweroff" ] || { echo "sandbox: poweroff resolves to $resolved" >&2; exit 98; }',
  `(cd / && exec env -i PATH="$fakebin:${STANDARD_PATH}" HOME=/root LANG=C.UTF-8 "$userdata") </dev/null >>"$log" 2>&1 &`,
  "cat >/dev/null || true"
].join("\n")

export interface SandboxPaths {
  readonly dir: string
  /** The instance's own /opt. */
  readonly opt: string
  readonly bin: string
  readonly fake: string
  readonly userData: string
  /** One line per power request the fakes received. */
  readonly requests: string
  /** The user-data's own output (cloud-init's log on a real VM). */
  readonly console: string
  /** The sandbox's set-up output. */
  readonly init: string
}

export const sandboxPaths = (dir: string): SandboxPaths => ({
  dir,
  opt: join(dir, "opt"),
  bin: join(dir, "bin"),
  fake: join(dir, "bin", ".fake-power"),
  userData: join(dir, "user-data"),
  requests: join(dir, "power-requests"),
  console: join(dir, "console.log"),
  init: join(dir, "init.log")
})

/** The real files behind every spelling of a power program on this machine. */
export const powerTargets = (): ReadonlyArray<string> => {
  const targets = new Set<string>()
  for (const dir of PROGRAM_DIRS) {
    for (const program of POWER_PROGRAMS) {
      const path = join(dir, program)
      try {
        lstatSync(path)
        targets.add(realpathSync(path))
      } catch {
        // Not installed under this name: nothing there to run.
      }
    }
  }
  return [...targets].sort()
}

let namespacesChecked: boolean | null = null

/**
 * The harness needs pid and mount namespaces with root inside (to bind the fakes). Without
 * them it refuses to run user-data at all, rather than run it where a power-off could escape.
 */
export const canSandbox = (): boolean => {
  if (namespacesChecked !== null) return namespacesChecked
  try {
    execFileSync("unshare", [...unshareFlags(), "--", "/bin/sh", "-c", "mount --make-rprivate / && mount --bind /dev/null /dev/null"], {
      stdio: "ignore",
      timeout: 5_000,
      env: { PATH: STANDARD_PATH }
    })
    namespacesChecked = true
  } catch {
    namespacesChecked = false
  }
  return namespacesChecked
}

const unshareFlags = (): ReadonlyArray<string> => [
  ...(process.getuid?.() === 0 ? [] : ["--map-root-user"]),
  "--pid",
  "--fork",
  "--mount-proc",
  "--uts",
  "--ipc",
  "--kill-child"
]

export interface SandboxOptions {
  readonly paths: SandboxPaths
  readonly hostname: string
  /** The decoded user-data to run. */
  readonly userData: Buffer
}

/** Starts a sandbox; the returned process is `unshare`, and killing it ends everything inside. */
export const startSandbox = (options: SandboxOptions): ChildProcess => {
  const { paths } = options
  mkdirSync(paths.opt, { recursive: true, mode: 0o755 })
  mkdirSync(paths.bin, { recursive: true, mode: 0o755 })
  writeFileSync(paths.fake, fakeScript(paths.requests), { mode: 0o755 })
  chmodSync(paths.fake, 0o755)
  for (const program of POWER_PROGRAMS) {
    const link = join(paths.bin, program)
    if (!existsSync(link)) symlinkSync(".fake-power", link)
  }
  writeFileSync(paths.userData, options.userData, { mode: 0o700 })
  chmodSync(paths.userData, 0o700)
  const args = [
    ...unshareFlags(),
    "--",
    "/bin/sh",
    "-c",
    initScript,
    "sandbox-init",
    paths.fake,
    paths.bin,
    paths.opt,
    options.hostname,
    paths.userData,
    paths.console,
    ...powerTargets()
  ]
  const initLog = paths.init
  writeFileSync(initLog, "", { mode: 0o600 })
  const child = spawn("unshare", args, {
    cwd: paths.dir,
    env: { PATH: STANDARD_PATH },
    stdio: ["pipe", "ignore", "pipe"]
  })
  child.stderr?.on("data", (chunk: Buffer) => writeFileSync(initLog, chunk, { flag: "a" }))
  return child
}
