import { consoleLines, describeCause, type ProviderErrorReason } from "@skyrepl/core"
import { Clock, Data, Deferred, Duration, Effect, FiberId } from "effect"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync } from "node:fs"
import { rm } from "node:fs/promises"
import { dirname, join } from "node:path"
import { FORK_SERVER_SCRIPT, type ForkServer } from "./fork-server.ts"

/**
 * Every process of a sandbox carries these variables from its first exec on, and children
 * inherit them, so /proc alone tells which processes belong to which instance: no database,
 * no pid file, nothing that a crash or a deleted state home could lose.
 */
export const INSTANCE_MARKER = "SKYREPL_INSTANCE"
/** Keeps sandboxes that another tool starts through this module (an emulator) apart from ours. */
export const PROVIDER_MARKER = "SKYREPL_SANDBOX_PROVIDER"

export class LocalApiError extends Data.TaggedError("LocalApiError")<{
  readonly operation: string
  readonly reason: ProviderErrorReason
  readonly message: string
  readonly cause?: unknown
}> {}

// ---------------------------------------------------------------------------------------------
// /proc

export interface ProcessInfo {
  readonly pid: number
  readonly ppid: number
  readonly pgid: number
  readonly sid: number
  /**
   * The one-letter state from /proc/PID/stat (`R`, `S`, `Z` …), except that a zombie main
   * thread whose process still has other threads is read as `R` (see `liveState`).
   */
  readonly state: string
  /** Start time in clock ticks since boot. */
  readonly startTicks: number
  /** Value of `SKYREPL_INSTANCE` in the process's initial environment, if any. */
  readonly instance: string | null
  /** Value of `SKYREPL_SANDBOX_PROVIDER` in the process's initial environment, if any. */
  readonly provider: string | null
}

const digits = /^[0-9]+$/

const toInt = (text: string | undefined): number | null =>
  text !== undefined && digits.test(text) ? Number(text) : null

/**
 * Reading /proc races with processes exiting; such a process simply is not there any more.
 * EACCES/EPERM: another user's process, whose environment we may not read and which cannot be
 * one of our sandboxes anyway.
 */
const vanishedCodes: ReadonlySet<string> = new Set(["ENOENT", "ESRCH", "EACCES", "EPERM", "EINVAL"])

const errorCode = (error: unknown): string | undefined => {
  if (typeof error !== "object" || error === null || !("code" in error)) return undefined
  const code: unknown = error.code
  return typeof code === "string" ? code : undefined
}

/**
 * Failures of this process's own resources (out of descriptors, of memory for the kernel) pass
 * once other work gives them back: the engine retries a termination that failed so, where an
 * `internal` failure would leave the instance to the next process's reaper.
 */
const exhaustionCodes: ReadonlySet<string> = new Set(["EMFILE", "ENFILE", "EAGAIN", "ENOMEM"])
const reasonOf = (cause: unknown): "transient" | "internal" => (exhaustionCodes.has(errorCode(cause) ?? "") ? "transient" : "internal")

/**
 * The synchronous reads of /proc below return null for a process that is gone and throw on
 * anything else (EMFILE, when this process has run out of descriptors): run through this, such
 * a failure is a typed error, not a defect that ended the command and left the instance's
 * record `terminating`.
 */
const readingProc = <A>(operation: string, read: () => A): Effect.Effect<A, LocalApiError> =>
  Effect.try({
    try: read,
    catch: (cause) => new LocalApiError({ operation, reason: reasonOf(cause), message: `cannot read /proc: ${describeCause(cause)}`, cause })
  })

const readOrNull = (path: string): Buffer | null => {
  try {
    return readFileSync(path)
  } catch (error) {
    if (vanishedCodes.has(errorCode(error) ?? "")) return null
    throw error
  }
}

/**
 * `pid (comm) state ppid pgrp session … starttime …`: `comm` may hold spaces and parentheses,
 * so the fields are counted from the last `)`.
 */
export const parseStat = (text: string): Omit<ProcessInfo, "instance" | "provider"> | null => {
  const open = text.indexOf("(")
  const close = text.lastIndexOf(")")
  if (open < 0 || close < open) return null
  const pid = toInt(text.slice(0, open).trim())
  const fields = text.slice(close + 1).trim().split(" ")
  const state = fields[0]
  const ppid = toInt(fields[1])
  const pgid = toInt(fields[2])
  const sid = toInt(fields[3])
  // Field 22 of the whole line; the rest starts at field 3.
  const startTicks = toInt(fields[19])
  if (pid === null || state === undefined || !/^[A-Za-z]$/.test(state)) return null
  if (ppid === null || pgid === null || sid === null || startTicks === null) return null
  return { pid, ppid, pgid, sid, state, startTicks }
}

const instancePrefix = Buffer.from(`${INSTANCE_MARKER}=`)
const providerPrefix = Buffer.from(`${PROVIDER_MARKER}=`)

const startsWith = (buffer: Buffer, start: number, end: number, prefix: Buffer): boolean =>
  end - start >= prefix.length && buffer.compare(prefix, 0, prefix.length, start, start + prefix.length) === 0

/**
 * What a forked sandbox leaves after its variables: the rest of the fork server's room, NULs
 * (see fork-server.ts). Compared in one call instead of read as thousands of empty entries.
 */
let zeros = Buffer.alloc(0)
const onlyZeros = (buffer: Buffer, start: number): boolean => {
  const length = buffer.length - start
  if (zeros.length < length) zeros = Buffer.alloc(length)
  return zeros.compare(buffer, start, buffer.length, 0, length) === 0
}

/** /proc/PID/environ is raw bytes separated by NUL; only the two marker entries are decoded. */
export const parseMarkers = (environ: Buffer): { readonly instance: string | null; readonly provider: string | null } => {
  let instance: string | null = null
  let provider: string | null = null
  let start = 0
  while (start < environ.length) {
    const nul = environ.indexOf(0, start)
    if (nul === start && onlyZeros(environ, start)) break
    const end = nul < 0 ? environ.length : nul
    if (startsWith(environ, start, end, instancePrefix)) {
      instance = environ.toString("utf8", start + instancePrefix.length, end)
    } else if (startsWith(environ, start, end, providerPrefix)) {
      provider = environ.toString("utf8", start + providerPrefix.length, end)
    }
    start = end + 1
  }
  return { instance, provider }
}

export const procAvailable = (): boolean => existsSync("/proc/self/stat")

type Markers = ReturnType<typeof parseMarkers>

/**
 * Markers of the processes seen by the last scan. A process's initial environment is fixed
 * until it execs, so while its pid, start time and command name stay the same its markers are
 * taken from here instead of reading /proc/PID/environ again: a scan then reads one small file
 * per process instead of two, and terminating 200 sandboxes at once scans /proc several times
 * per sandbox. An exec changes the command name, which makes the entry stale.
 */
const markerCache = new Map<number, { readonly key: string; readonly markers: Markers }>()

/**
 * A stat read as this module judges liveness: /proc/PID/stat describes the main thread, and
 * when a multi-threaded process is killed its main thread can be done (a zombie) while another
 * thread is still exiting. For a pid namespace's init (the agent, which runs threads) that other
 * thread is the one still killing and reaping the rest of the namespace, and for a process-group
 * sandbox's agent the sandbox is not gone either. So a zombie with other threads still listed
 * is read as running; the /proc/PID/task look-up is made for zombies only.
 */
const liveState = <S extends { readonly pid: number; readonly state: string }>(stat: S | null): S | null => {
  if (stat === null || stat.state !== "Z") return stat
  let threads = 0
  try {
    threads = readdirSync(`/proc/${stat.pid}/task`).length
  } catch {
    // Gone meanwhile: a zombie it is.
  }
  return threads > 1 ? { ...stat, state: "R" } : stat
}

const readProcess = (pid: string, seen: Map<number, { readonly key: string; readonly markers: Markers }>): ProcessInfo | null => {
  const stat = readOrNull(`/proc/${pid}/stat`)
  if (stat === null) return null
  const text = stat.toString("latin1")
  const parsed = liveState(parseStat(text))
  if (parsed === null) return null
  const key = `${parsed.startTicks} ${text.slice(text.indexOf("("), text.lastIndexOf(")") + 1)}`
  const cached = markerCache.get(parsed.pid)
  let markers: Markers
  if (cached !== undefined && cached.key === key) {
    markers = cached.markers
  } else {
    const environ = readOrNull(`/proc/${pid}/environ`)
    markers = environ === null ? { instance: null, provider: null } : parseMarkers(environ)
    if (!environSettled(parsed, environ)) return { ...parsed, ...markers }
  }
  seen.set(parsed.pid, { key, markers })
  return { ...parsed, ...markers }
}

/**
 * Whether an environment read may stand for the process until it execs again. An exec sets
 * the new command name before it records where the new environment lies, so a read in between
 * finds it empty (Linux sets the environment's bounds only once the new program is mapped).
 * Remembered, such a read would hide a sandbox's agent for good: the likely cause of a sandbox
 * the provider suite once never saw start, under load, with two sandboxes starting at once. An
 * empty read is therefore remembered only for kernel threads (pid 2 and its children), which
 * have no environment.
 */
export const environSettled = (process: { readonly pid: number; readonly ppid: number }, environ: Uint8Array | null): boolean =>
  environ === null || environ.length > 0 || process.pid === 2 || process.ppid === 2

/**
 * One pass over /proc. Synchronous on purpose: a few small reads per process, and a snapshot
 * taken in one go is more coherent than one spread over many event-loop turns.
 */
export const scanProcesses: Effect.Effect<ReadonlyArray<ProcessInfo>, LocalApiError> = readingProc("scan", () => {
  const out: Array<ProcessInfo> = []
  const seen = new Map<number, { readonly key: string; readonly markers: Markers }>()
  for (const entry of readdirSync("/proc")) {
    if (!digits.test(entry)) continue
    const info = readProcess(entry, seen)
    if (info !== null) out.push(info)
  }
  // Only what this scan saw is kept: a pid that is gone takes its entry with it.
  markerCache.clear()
  for (const [pid, entry] of seen) markerCache.set(pid, entry)
  return out
})

/**
 * A scan that starts after the caller asked, shared by every caller that asked before it
 * started. Terminating 200 sandboxes at once has each termination scan /proc a few times while
 * it waits, and every scan reads a file per process of the machine: scanned one by one, they
 * were most of the controller's CPU. Shared, one scan answers all the waiting callers, and each
 * still sees a snapshot taken after its own request (so "gone" is never an old answer).
 *
 * A scan waits after the previous one for as long as that one took, which keeps scanning to at
 * most about half of this process's time however many callers wait; a lone caller on a quiet
 * machine waits for nothing.
 */
const liveClock = Clock.make()
let nextScan: Deferred.Deferred<ReadonlyArray<ProcessInfo>, LocalApiError> | null = null
let quietUntil = 0

export const freshProcesses: Effect.Effect<ReadonlyArray<ProcessInfo>, LocalApiError> = Effect.suspend(() => {
  if (nextScan !== null) return Deferred.await(nextScan)
  const shared = Deferred.unsafeMake<ReadonlyArray<ProcessInfo>, LocalApiError>(FiberId.none)
  nextScan = shared
  const scan = Effect.suspend(() => {
    // Callers from here on ask for the scan after this one.
    nextScan = null
    const started = performance.now()
    return Effect.ensuring(
      scanProcesses,
      Effect.sync(() => {
        const ended = performance.now()
        quietUntil = ended + (ended - started)
      })
    )
  })
  // A daemon: a caller that is interrupted must not leave the others without their answer. The
  // pause is real time (a test's virtual clock would never end it), and at least one yield, so
  // that callers made runnable at the same moment join this scan.
  const pause = Math.max(0, quietUntil - performance.now())
  const run = (pause === 0 ? Effect.yieldNow() : Effect.sleep(Duration.millis(pause)).pipe(Effect.withClock(liveClock))).pipe(
    Effect.zipRight(Effect.exit(scan)),
    Effect.flatMap((exit) => Deferred.done(shared, exit))
  )
  return Effect.zipRight(Effect.forkDaemon(run), Deferred.await(shared))
})

/** Zombies and dead tasks hold no resources: they are waiting to be reaped, nothing else. */
export const isLive = (p: Pick<ProcessInfo, "state">): boolean => p.state !== "Z" && p.state !== "X" && p.state !== "x"

/** The boot time from /proc/stat, to turn a start time in ticks into a wall-clock time. */
export const bootTimeMs: Effect.Effect<number | null, LocalApiError> = readingProc("list", () => {
  const stat = readOrNull("/proc/stat")
  if (stat === null) return null
  const match = /^btime ([0-9]+)$/m.exec(stat.toString("latin1"))
  return match?.[1] === undefined ? null : Number(match[1]) * 1000
})

/** USER_HZ is 100 on every Linux ABI Node and Bun run on; /proc reports start times in it. */
const ticksPerSecond = 100

export const startTimeMs = (p: ProcessInfo, bootMs: number): number => bootMs + Math.round((p.startTicks * 1000) / ticksPerSecond)

// ---------------------------------------------------------------------------------------------
// Sandboxes in a /proc snapshot

export interface Sandbox {
  readonly name: string
  /** The topmost marked process: `unshare` for a namespace sandbox, the agent for a process group. */
  readonly root: ProcessInfo
  /**
   * Marked processes plus their descendants, so a child that cleared its environment is still
   * found while its ancestry leads back to the sandbox.
   */
  readonly members: ReadonlyArray<ProcessInfo>
}

/** Groups the live processes of `provider`'s sandboxes by instance name. */
export const findSandboxes = (processes: ReadonlyArray<ProcessInfo>, provider: string): ReadonlyMap<string, Sandbox> => {
  const live = processes.filter(isLive)
  const children = new Map<number, Array<ProcessInfo>>()
  for (const p of live) {
    const siblings = children.get(p.ppid)
    if (siblings === undefined) children.set(p.ppid, [p])
    else siblings.push(p)
  }
  const owner = new Map<number, string>()
  const ownMarker = (p: ProcessInfo): string | null => (p.provider === provider ? p.instance : null)
  const marked = live.filter((p) => ownMarker(p) !== null)
  for (const start of marked) {
    const name = ownMarker(start)
    if (name === null || owner.has(start.pid)) continue
    const queue: Array<ProcessInfo> = [start]
    for (let p = queue.pop(); p !== undefined; p = queue.pop()) {
      owner.set(p.pid, name)
      for (const child of children.get(p.pid) ?? []) {
        // A descendant marked for another instance (a nested controller's sandbox) is its own.
        const childName = ownMarker(child)
        if (!owner.has(child.pid) && (childName === null || childName === name)) queue.push(child)
      }
    }
  }
  const byName = new Map<string, Array<ProcessInfo>>()
  for (const p of live) {
    const name = owner.get(p.pid)
    if (name === undefined) continue
    const members = byName.get(name)
    if (members === undefined) byName.set(name, [p])
    else members.push(p)
  }
  const out = new Map<string, Sandbox>()
  for (const [name, members] of byName) {
    const roots = members
      .filter((p) => ownMarker(p) === name && owner.get(p.ppid) !== name)
      .sort((a, b) => a.startTicks - b.startTicks || a.pid - b.pid)
    const root = roots[0] ?? members[0]
    if (root !== undefined) out.set(name, { name, root, members })
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Killing

const sendKill = (target: number): "sent" | "gone" | "denied" => {
  try {
    process.kill(target, "SIGKILL")
    return "sent"
  } catch (error) {
    const code = errorCode(error)
    if (code === "ESRCH") return "gone"
    if (code === "EPERM") return "denied"
    throw error
  }
}

/**
 * Ends what is left in the process group of `pid`, a child this process started detached (its
 * own group) that has exited: the configured interpreter may be a wrapper script that starts a
 * child of its own and exits, and nothing else would ever end that child, which carries no
 * sandbox's marker. Called once the child's exit is known, before its group id can be reused.
 */
export const endGroupLeftovers = (pid: number | undefined): void => {
  if (pid === undefined) return
  try {
    process.kill(-pid, "SIGKILL")
  } catch {
    // ESRCH: nothing was left.
  }
}

/**
 * SIGKILLs the root first (for a namespace sandbox that is `unshare`, whose death takes the
 * namespace's init and with it every process in the namespace), then every member, then each
 * process group made only of members: a group kill also reaches a child forked after the
 * snapshot. A group that holds anyone else is left alone.
 */
export const killSandbox = (sandbox: Sandbox, processes: ReadonlyArray<ProcessInfo>): ReadonlyArray<number> => {
  const denied: Array<number> = []
  const memberPids = new Set(sandbox.members.map((p) => p.pid))
  const note = (pid: number, result: "sent" | "gone" | "denied") => {
    if (result === "denied") denied.push(pid)
  }
  note(sandbox.root.pid, sendKill(sandbox.root.pid))
  for (const p of sandbox.members) if (p.pid !== sandbox.root.pid) note(p.pid, sendKill(p.pid))
  const groups = new Set(sandbox.members.map((p) => p.pgid))
  for (const pgid of groups) {
    if (pgid <= 1) continue
    const onlyMembers = processes.every((p) => p.pgid !== pgid || !isLive(p) || memberPids.has(p.pid))
    if (onlyMembers) sendKill(-pgid)
  }
  return denied
}

// ---------------------------------------------------------------------------------------------
// Seeing a namespace sandbox end

/**
 * The pid in the innermost pid namespace, from the `NSpid:` line of /proc/PID/status (one pid
 * per namespace, outermost first). Null without nesting, or without the line (kernels before 4.1).
 */
export const innermostPid = (status: string): number | null => {
  const line = status.split("\n").find((l) => l.startsWith("NSpid:"))
  const pids = line === undefined ? [] : line.slice("NSpid:".length).trim().split(/\s+/)
  return pids.length < 2 ? null : toInt(pids[pids.length - 1])
}

/**
 * The init of a namespace sandbox's pid namespace (pid 1 inside, the one child of `unshare
 * --fork`), or null when the snapshot shows no such shape: a process-group sandbox, or one whose
 * `unshare` has not forked yet. Read before the kill, while its status can still be read.
 *
 * The kernel lets a namespace's init finish exiting only once every other process of the
 * namespace is gone, so watching it (and `unshare`, which is outside) tells when the whole
 * sandbox is gone without scanning every process of the machine.
 */
export const namespaceInit = (sandbox: Sandbox): ProcessInfo | null => {
  const children = sandbox.members.filter((p) => p.ppid === sandbox.root.pid)
  const init = children.length === 1 ? children[0] : undefined
  if (init === undefined) return null
  const status = readOrNull(`/proc/${init.pid}/status`)
  return status !== null && innermostPid(status.toString("latin1")) === 1 ? init : null
}

/** One process read on its own, as a scan reads it (the scan's memory of markers left as is). */
const readOneProcess = (pid: number): ProcessInfo | null => readProcess(String(pid), new Map())

/**
 * The namespace sandbox `name` found from its `unshare` (`pid`, what spawn returned) without a
 * scan of /proc: that process, checked to carry the sandbox's markers (a pid reused since
 * belongs to someone else), and its one child, checked to be pid 1 of its own pid namespace.
 * Null when that shape is not there (a process-group sandbox, an `unshare` that has not forked
 * yet or has ended, a kernel without /proc/PID/task/TID/children); the caller then scans.
 */
export const namespaceSandboxAt = (
  provider: string,
  name: string,
  pid: number
): { readonly root: ProcessInfo; readonly init: ProcessInfo } | null => {
  const root = readOneProcess(pid)
  if (root === null || !isLive(root) || root.provider !== provider || root.instance !== name) return null
  const children = readOrNull(`/proc/${pid}/task/${pid}/children`)
  const pids = children === null ? [] : children.toString("latin1").trim().split(" ").filter((c) => c !== "")
  const initPid = pids.length === 1 ? toInt(pids[0]) : null
  const init = initPid === null ? null : readOneProcess(initPid)
  if (init === null || init.ppid !== pid || !isLive(init)) return null
  const status = readOrNull(`/proc/${init.pid}/status`)
  return status !== null && innermostPid(status.toString("latin1")) === 1 ? { root, init } : null
}

/** Whether the process seen as `p` has ended: gone, a zombie, or its pid now another process's. */
export const hasEnded = (p: ProcessInfo): boolean => {
  const stat = readOrNull(`/proc/${p.pid}/stat`)
  const now = stat === null ? null : liveState(parseStat(stat.toString("latin1")))
  return now === null || now.startTicks !== p.startTicks || !isLive(now)
}

const stillAlive = (name: string, left: ReadonlyArray<ProcessInfo>) =>
  new LocalApiError({
    operation: "terminate",
    reason: "transient",
    message: `processes of ${name} still alive after SIGKILL: ${left.map((p) => `${p.pid}(${p.state})`).join(", ")}`
  })

/** Waits until every process in `watched` has ended, looking again soon, then backing off. */
const untilEnded = (
  name: string,
  watched: ReadonlyArray<ProcessInfo>,
  deadline: number
): Effect.Effect<void, LocalApiError> =>
  Effect.gen(function* () {
    // SIGKILLed processes are usually gone within a millisecond or two.
    let pause = 1
    for (;;) {
      const left = yield* readingProc("terminate", () => watched.filter((p) => !hasEnded(p)))
      if (left.length === 0) return
      if (Date.now() >= deadline) return yield* stillAlive(name, left)
      yield* Effect.sleep(Duration.millis(pause))
      pause = Math.min(pause * 2, 100)
    }
  })

const killFailed = (name: string) => (cause: unknown) =>
  new LocalApiError({ operation: "terminate", reason: "internal", message: `cannot signal ${name}: ${describeCause(cause)}`, cause })

const deniedKill = (name: string, denied: ReadonlyArray<number>) =>
  new LocalApiError({ operation: "terminate", reason: "auth", message: `not allowed to kill processes ${denied.join(", ")} of ${name}` })

/**
 * Kills the sandbox `name` and waits until none of it is alive: for a namespace sandbox, until
 * its `unshare` and its namespace's init have ended; otherwise until a scan of /proc shows none
 * of it. A sandbox that is not there is success. Bounded: processes stuck in the kernel make it
 * fail as `transient`.
 *
 * `providerRef`, the pid of the sandbox's `unshare` as spawn returned it, spares the scan of
 * every process on the machine (a few milliseconds of the controller's one thread, per
 * termination): SIGKILL to a pid namespace's init makes the kernel kill every other process in
 * the namespace, so the sandbox's members need not be found one by one.
 */
export const terminateSandbox = (
  provider: string,
  name: string,
  timeout: Duration.DurationInput,
  providerRef: string | null = null
): Effect.Effect<void, LocalApiError> =>
  Effect.gen(function* () {
    const deadline = Date.now() + Duration.toMillis(Duration.decode(timeout))
    const pid = providerRef === null ? null : toInt(providerRef)
    const known = pid === null ? null : yield* readingProc("terminate", () => namespaceSandboxAt(provider, name, pid))
    if (known !== null) {
      const denied = yield* Effect.try({
        try: () => [known.root, known.init].filter((p) => sendKill(p.pid) === "denied").map((p) => p.pid),
        catch: killFailed(name)
      })
      if (denied.length > 0) return yield* deniedKill(name, denied)
      return yield* untilEnded(name, [known.root, known.init], deadline)
    }
    let pause = 1
    for (;;) {
      const processes = yield* freshProcesses
      const sandbox = findSandboxes(processes, provider).get(name)
      if (sandbox === undefined) return
      const init = yield* readingProc("terminate", () => namespaceInit(sandbox))
      const denied = yield* Effect.try({ try: () => killSandbox(sandbox, processes), catch: killFailed(name) })
      if (denied.length > 0) return yield* deniedKill(name, denied)
      if (init !== null) return yield* untilEnded(name, [sandbox.root, init], deadline)
      if (Date.now() >= deadline) return yield* stillAlive(name, sandbox.members)
      yield* Effect.sleep(Duration.millis(pause))
      pause = Math.min(pause * 2, 100)
    }
  })

// ---------------------------------------------------------------------------------------------
// Namespaces

/** How to enter a fresh pid/mount/uts/ipc namespace set on this machine. */
export interface NamespaceSupport {
  readonly unshare: string
  readonly flags: ReadonlyArray<string>
}

const namespaceFlags = ["--pid", "--fork", "--mount-proc", "--uts", "--ipc", "--kill-child"] as const

const namespaceAttempts = (): ReadonlyArray<ReadonlyArray<string>> =>
  process.getuid?.() === 0 ? [namespaceFlags] : [namespaceFlags, ["--map-root-user", ...namespaceFlags]]

const probeTimeoutMs = 5_000

/** Whether `unshare flags -- true` succeeds; a hung unshare counts as a failure. */
const unshareWorks = (unshare: string, flags: ReadonlyArray<string>): Promise<boolean> =>
  new Promise((resolve) => {
    let child: ChildProcess
    try {
      child = spawn(unshare, [...flags, "--", "true"], { stdio: "ignore" })
    } catch {
      return resolve(false)
    }
    const timer = setTimeout(() => child.kill("SIGKILL"), probeTimeoutMs)
    child.once("error", () => {
      clearTimeout(timer)
      resolve(false)
    })
    child.once("exit", (code) => {
      clearTimeout(timer)
      resolve(code === 0)
    })
  })

/**
 * Tries `unshare … true` as we are, then (not root) with a user namespace mapping us to root.
 * `null`: namespaces are not available here (no unshare, macOS, a locked-down container).
 */
export const probeNamespaces = (unshare: string | null): Effect.Effect<NamespaceSupport | null> => {
  if (unshare === null || process.platform !== "linux") return Effect.succeed(null)
  return Effect.gen(function* () {
    for (const flags of namespaceAttempts()) {
      if (yield* Effect.promise(() => unshareWorks(unshare, flags))) return { unshare, flags }
    }
    return null
  })
}

/** `probeNamespaces`, blocking: for a caller that must answer synchronously. */
export const probeNamespacesSync = (unshare: string | null): NamespaceSupport | null => {
  if (unshare === null || process.platform !== "linux") return null
  for (const flags of namespaceAttempts()) {
    const result = spawnSync(unshare, [...flags, "--", "true"], { stdio: "ignore", timeout: probeTimeoutMs })
    if (result.error === undefined && result.status === 0) return { unshare, flags }
  }
  return null
}

// ---------------------------------------------------------------------------------------------
// Starting a sandbox

export interface InstancePaths {
  readonly dir: string
  readonly workdir: string
  /** The agent's own log (`--log`). */
  readonly agentLog: string
  /** stdout/stderr of the sandbox's processes (unshare, the shell, the interpreter). */
  readonly consoleLog: string
}

export const instancePaths = (instancesDir: string, name: string): InstancePaths => {
  const dir = join(instancesDir, name)
  return { dir, workdir: join(dir, "work"), agentLog: join(dir, "agent.log"), consoleLog: join(dir, "console.log") }
}

/**
 * Asynchronous: a run's workdir can hold any number of files, and removing them must not hold
 * the controller's one thread (every other launch's agent is served on it).
 */
export const removeInstanceDir = (paths: InstancePaths): Effect.Effect<void, LocalApiError> =>
  Effect.tryPromise({
    try: () => rm(paths.dir, { recursive: true, force: true }),
    catch: (cause) =>
      new LocalApiError({ operation: "terminate", reason: reasonOf(cause), message: `cannot remove ${paths.dir}: ${describeCause(cause)}`, cause })
  })

/** How much of the end of a console log is read for its last lines: enough for a traceback's end. */
const CONSOLE_TAIL_BYTES = 4096

/**
 * The last `lines` non-empty lines of the sandbox's console log; empty when there is no log
 * (never started, or removed by a termination) or it is unreadable.
 */
export const consoleTail = (paths: InstancePaths, lines: number): ReadonlyArray<string> => {
  let fd: number | null = null
  try {
    fd = openSync(paths.consoleLog, "r")
    const size = fstatSync(fd).size
    const length = Math.min(size, CONSOLE_TAIL_BYTES)
    const buffer = Buffer.alloc(length)
    const read = readSync(fd, buffer, 0, length, size - length)
    return consoleLines(buffer.subarray(0, read).toString("utf8"), lines, size > length)
  } catch {
    return []
  } finally {
    if (fd !== null) closeSync(fd)
  }
}

export interface SandboxCommand {
  readonly provider: string
  readonly name: string
  readonly paths: InstancePaths
  /** `null`: a plain process group in its own session. */
  readonly namespaces: NamespaceSupport | null
  readonly python: string
  readonly agentScript: string
  /** The agent's source, when `agentScript` is a compiled copy of it (a fork server's key). */
  readonly agentSource?: string
  readonly agentArgs: ReadonlyArray<string>
  /** Variables for the agent that must not appear on its command line (the token). */
  readonly secretEnv: Readonly<Record<string, string>>
}

/**
 * The controller's environment may hold cloud credentials and tool settings; a sandbox gets
 * the same small, predictable environment a fresh VM would, plus the markers.
 */
const inheritedVariables = ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM"]
const fallbackPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

export const inheritedEnv = (): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && (inheritedVariables.includes(key) || key.startsWith("LC_"))) env[key] = value
  }
  env["PATH"] ??= fallbackPath
  return env
}

const sandboxEnv = (command: SandboxCommand): Record<string, string> => ({
  ...inheritedEnv(),
  ...command.secretEnv,
  [INSTANCE_MARKER]: command.name,
  [PROVIDER_MARKER]: command.provider
})

/**
 * The hostname is set by writing the uts namespace's own /proc entry from the shell, which
 * costs no extra exec; positional parameters keep the name and paths out of shell parsing.
 * Inside a user namespace (not root: `--map-root-user`) that file is refused, as it wants root
 * of the whole machine, so the shell falls back to `hostname`, whose sethostname(2) the
 * namespace allows.
 */
const setHostnameThenExec = '{ printf %s "$0" > /proc/sys/kernel/hostname; } 2>/dev/null || hostname "$0" && exec "$@"'

/**
 * `-S`: the agent uses the standard library only, and skipping `site` (site-packages, `.pth`
 * hooks) saves several milliseconds of every start, which counts toward launch latency.
 */
const interpreterFlags = ["-S"]

const commandLine = (command: SandboxCommand): readonly [string, ReadonlyArray<string>] => {
  const agent = [...interpreterFlags, command.agentScript, ...command.agentArgs]
  if (command.namespaces === null) return [command.python, agent]
  return [
    command.namespaces.unshare,
    [...command.namespaces.flags, "--", "/bin/sh", "-c", setHostnameThenExec, command.name, command.python, ...agent]
  ]
}

const prepareDirs = (command: SandboxCommand): Effect.Effect<void, LocalApiError> =>
  Effect.try({
    try: () => mkdirSync(command.paths.workdir, { recursive: true, mode: 0o700 }),
    catch: (cause) =>
      new LocalApiError({
        operation: "spawn",
        reason: "internal",
        message: `cannot create ${command.paths.workdir}: ${describeCause(cause)}`,
        cause
      })
  })

const spawnFailure = (file: string, cause: unknown): LocalApiError => {
  const code = errorCode(cause)
  return new LocalApiError({
    operation: "spawn",
    reason: code === "ENOENT" || code === "EACCES" ? "unavailable" : "internal",
    message: `cannot start ${file}: ${describeCause(cause)}`,
    cause
  })
}

/**
 * Starts the sandbox detached: its own session, stdio to a log file, unreferenced, and not
 * killed when this process exits. It must outlive its controller; the lease reaper or the
 * agent's dead-man switch ends it. Returns the root pid as soon as the process exists: no
 * waiting for the agent, the engine waits for its registration. Forked by `forkServer` when it
 * can take the sandbox, exec'd otherwise (`execSandbox`).
 */
export const startSandbox = (command: SandboxCommand, forkServer?: ForkServer): Effect.Effect<number, LocalApiError> =>
  Effect.gen(function* () {
    // A forked sandbox makes its own directories: with many launches at once, directory
    // operations in one parent wait on each other for milliseconds, which this process's one
    // thread should not.
    if (forkServer !== undefined) {
      const forked = yield* forkSandbox(command, forkServer)
      if (forked !== null) return forked
    }
    yield* prepareDirs(command)
    return yield* execSandbox(command)
  })

/**
 * The sandbox forked by `server`, or null to exec it. A server that ended with the request
 * unanswered may have forked it: whatever of it is found is killed before the exec, and a root
 * forked but not yet marked ends by itself when it finds its server gone (the fork server's
 * `_enter_sandbox`), so the name never runs twice.
 */
const forkSandbox = (command: SandboxCommand, server: ForkServer): Effect.Effect<number | null, LocalApiError> =>
  server
    .fork(
      {
        python: command.python,
        source: command.agentSource ?? command.agentScript,
        path: command.agentScript,
        server: join(dirname(command.agentSource ?? command.agentScript), FORK_SERVER_SCRIPT)
      },
      {
        name: command.name,
        argv: command.agentArgs,
        env: sandboxEnv(command),
        cwd: command.paths.workdir,
        console: command.paths.consoleLog,
        namespaces:
          command.namespaces === null ? "none" : command.namespaces.flags.includes("--map-root-user") ? "user" : "root"
      }
    )
    .pipe(
      Effect.catchAll(() =>
        Effect.as(Effect.ignore(terminateSandbox(command.provider, command.name, forkServerGrace)), null)
      )
    )

/** How long a sandbox of a fork server that ended mid-request is given to be seen ending. */
const forkServerGrace = Duration.seconds(5)

/**
 * Plain `node:child_process`: a wrapper library costs more to load than this whole call takes,
 * and the CLI loads it for every command.
 */
const execSandbox = (command: SandboxCommand): Effect.Effect<number, LocalApiError> =>
  Effect.gen(function* () {
    const [file, args] = commandLine(command)
    const child = yield* Effect.try({
      try: () => {
        const fd = openSync(command.paths.consoleLog, "a", 0o600)
        try {
          // The child gets the log file's descriptor itself: no pipe through this process that
          // would end when it exits.
          const started = spawn(file, [...args], {
            cwd: command.paths.workdir,
            env: sandboxEnv(command),
            stdio: ["ignore", fd, fd],
            detached: true
          })
          started.unref()
          // Listened for at once: an 'error' with no listener would crash this process.
          const failed = new Promise<unknown>((resolve) => started.once("error", resolve))
          return { started, failed }
        } finally {
          closeSync(fd)
        }
      },
      catch: (cause) => spawnFailure(file, cause)
    })
    const pid = child.started.pid
    if (pid !== undefined) return pid
    // No pid: the exec itself failed, and the runtime reports why (ENOENT, EACCES …).
    const cause = yield* Effect.promise(() => child.failed)
    return yield* spawnFailure(file, cause)
  })
