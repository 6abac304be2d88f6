import { describeCause } from "@skyrepl/core"
import { Deferred, Duration, Effect, FiberId, Schema } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { closeSync, existsSync, mkdirSync, openSync } from "node:fs"
import { dirname } from "node:path"
import { endGroupLeftovers, LocalApiError } from "./local-api.ts"

/**
 * The agent's fork server (agent/skyrepl_fork_server.py, beside the agent): one interpreter per
 * provider that has loaded the agent already and forks each sandbox from itself. A sandbox
 * started so skips the interpreter's start and the agent's loading, about 12 ms of CPU and of
 * waiting per launch; it looks to /proc exactly like one exec'd through `unshare`, so nothing
 * that finds, lists or kills sandboxes tells them apart (docs/architecture.md).
 *
 * In mode `auto` the server is started by a provider's second spawn, not its first: a CLI
 * command launches once and exits, and an interpreter started for nothing would cost it what it
 * saves others; until it is ready, spawns exec. In mode `always` the first spawn starts it and
 * waits for it. Whenever it cannot take a sandbox, the sandbox is exec'd as before.
 */
export interface ForkRequest {
  readonly name: string
  readonly argv: ReadonlyArray<string>
  readonly env: Readonly<Record<string, string>>
  /** The sandbox's working directory, which the fork makes (parents too) if it is not there. */
  readonly cwd: string
  /** The log for the sandbox's stdout and stderr, in a directory `cwd`'s making makes. */
  readonly console: string
  /** `none`: a process group; `root`: namespaces as root; `user`: inside a user namespace too. */
  readonly namespaces: "none" | "root" | "user"
}

/** The interpreter and agent a sandbox asks for. */
export interface ForkAgent {
  readonly python: string
  /** The agent's source: a server that loaded another agent cannot fork this sandbox. */
  readonly source: string
  /** The agent file for the server to load (a compiled copy of `source`, or `source` itself). */
  readonly path: string
  /** The fork server's script; where it is missing, every sandbox is exec'd. */
  readonly server: string
}

/** The fork server's file name, beside the agent's. */
export const FORK_SERVER_SCRIPT = "skyrepl_fork_server.py"

export interface ForkServer {
  /**
   * The pid of the sandbox's root, forked; `null` when the server cannot take this sandbox now
   * (not started or not ready yet, ended, another interpreter or agent asked for, an
   * environment larger than its room), for the caller to exec it instead. Fails when the server
   * took the request and ended before answering: whether it forked is then not known.
   */
  readonly fork: (agent: ForkAgent, request: ForkRequest) => Effect.Effect<number | null, LocalApiError>
  /** Ends the server (it exits when its stdin ends); sandboxes it forked run on. */
  readonly close: Effect.Effect<void>
}

/** Bytes of environment the server starts with, which each sandbox writes its own over. */
export const FORK_SERVER_ROOM = 64 * 1024
const roomVariable = "SKYREPL_FORK_SERVER_ROOM"

/** What the server writes on its stdout, one JSON object per line. */
const ServerLine = Schema.parseJson(
  Schema.Union(
    Schema.Struct({ ready: Schema.Literal(true), room: Schema.Number }),
    Schema.Struct({ id: Schema.Number, pid: Schema.Number }),
    Schema.Struct({ id: Schema.Number, error: Schema.String })
  )
)
const decodeLine = Schema.decodeUnknownEither(ServerLine)

/** The environment as the sandbox's first process will read it: `name=value` and a NUL each. */
export const environmentBytes = (env: Readonly<Record<string, string>>): number => {
  let size = 0
  for (const [name, value] of Object.entries(env)) size += Buffer.byteLength(name) + Buffer.byteLength(value) + 2
  return size
}

const ended = (message: string, cause?: unknown) =>
  new LocalApiError({ operation: "spawn", reason: "transient", message: `the fork server ${message}`, cause })

type Pending = { readonly id: number; readonly answer: Deferred.Deferred<number, LocalApiError> }

interface Running {
  readonly python: string
  readonly source: string
  readonly child: ChildProcess
  /** Set once the server said it is ready: the bytes of environment it has room for. */
  room: number | null
  /** Whether it became ready (false: it ended first). */
  readonly ready: Deferred.Deferred<boolean>
  readonly pending: Array<Pending>
}

/** Streams of a child process keep the event loop alive unless told not to. */
const setRef = (stream: unknown, on: boolean) => {
  if (typeof stream !== "object" || stream === null) return
  const method = on ? "ref" : "unref"
  if (method in stream) {
    const fn: unknown = (stream as Record<string, unknown>)[method]
    if (typeof fn === "function") fn.call(stream)
  }
}

/**
 * How long a request waits for the server's answer. A fork takes milliseconds, and under 200
 * launches at once (bench B3) answers come within about a second; a server that says nothing
 * for this long is stuck (stopped, wedged), and is killed, which fails its requests as a server
 * that died does: each spawn then execs, instead of waiting for good.
 */
const FORK_ANSWER_TIMEOUT = Duration.seconds(10)

/**
 * `env`: the variables the server's interpreter starts with (locale and the like; a sandbox's
 * own are written in each fork). `log`: where the server's own stderr goes.
 */
export const makeForkServer = (
  env: Readonly<Record<string, string>>,
  log: string,
  mode: "auto" | "always",
  answerTimeout: Duration.DurationInput = FORK_ANSWER_TIMEOUT
): ForkServer => {
  // Decoded once, not on every request.
  const answerLimit = { ms: Duration.toMillis(Duration.decode(answerTimeout)), text: Duration.format(Duration.decode(answerTimeout)) }
  let spawns = 0
  let server: Running | null = null
  let nextId = 1
  /** Starts left: a server that keeps ending is not started forever. */
  let startsLeft = 3

  const stop = (running: Running, error: LocalApiError) => {
    if (server === running) server = null
    Effect.runSync(Deferred.succeed(running.ready, false))
    for (const p of running.pending.splice(0)) Effect.runSync(Deferred.fail(p.answer, error))
    running.child.stdin?.destroy()
  }

  const onLine = (running: Running, line: string) => {
    const decoded = decodeLine(line)
    if (decoded._tag === "Left") return stop(running, ended(`wrote a line it should not have: ${line.slice(0, 200)}`))
    const message = decoded.right
    if ("ready" in message) {
      running.room = message.room
      if (running.pending.length === 0) setRef(running.child.stdout, false)
      Effect.runSync(Deferred.succeed(running.ready, true))
      return
    }
    const next = running.pending[0]
    if (next === undefined || next.id !== message.id) {
      return stop(running, ended(`answered request ${message.id} out of turn`))
    }
    running.pending.shift()
    if (running.pending.length === 0) setRef(running.child.stdout, false)
    Effect.runSync(
      "pid" in message
        ? Deferred.succeed(next.answer, message.pid)
        : Deferred.fail(next.answer, ended(`could not fork ${message.error}`))
    )
  }

  const start = (agent: ForkAgent) => {
    startsLeft--
    if (!existsSync(agent.server)) return
    let fd: number
    try {
      mkdirSync(dirname(log), { recursive: true, mode: 0o700 })
      fd = openSync(log, "a", 0o600)
    } catch {
      return
    }
    try {
      const child = spawn(agent.python, ["-S", agent.server, "--agent", agent.path], {
        env: { ...env, [roomVariable]: "0".repeat(FORK_SERVER_ROOM) },
        stdio: ["pipe", "pipe", fd],
        // Its own session: a Ctrl-C at the terminal is the controller's to handle.
        detached: true
      })
      const running: Running = {
        python: agent.python,
        source: agent.source,
        child,
        room: null,
        ready: Deferred.unsafeMake(FiberId.none),
        pending: []
      }
      server = running
      child.unref()
      setRef(child.stdin, false)
      // Referenced while the server is awaited: until it is ready, then while requests wait.
      let buffered = ""
      child.stdout?.setEncoding("utf8")
      child.stdout?.on("data", (chunk: string) => {
        buffered += chunk
        for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
          const line = buffered.slice(0, nl)
          buffered = buffered.slice(nl + 1)
          onLine(running, line)
        }
      })
      child.stdin?.on("error", () => stop(running, ended("closed its stdin")))
      child.once("error", (cause) => stop(running, ended(`could not start: ${describeCause(cause)}`, cause)))
      child.once("exit", (code, signal) => {
        // Sandboxes are not in its group: each forked one makes its own session before it
        // starts, and a server that is closed waits for that before exiting (one forked just
        // before the server died must not start anyway).
        endGroupLeftovers(child.pid)
        stop(running, ended(`exited (${signal ?? `code ${code}`})`))
      })
    } catch {
      // No server this time: spawns exec.
    } finally {
      closeSync(fd)
    }
  }

  const fork = (agent: ForkAgent, request: ForkRequest): Effect.Effect<number | null, LocalApiError> =>
    Effect.suspend(() => {
      spawns++
      if (server === null && startsLeft > 0 && (mode === "always" || spawns >= 2)) start(agent)
      const running = server
      if (running === null) return Effect.succeed(null)
      if (running.room === null && mode === "auto") return Effect.succeed(null)
      return Effect.flatMap(Deferred.await(running.ready), (ready) => (ready ? send(running, agent, request) : Effect.succeed(null)))
    })

  const send = (running: Running, agent: ForkAgent, request: ForkRequest): Effect.Effect<number | null, LocalApiError> => {
    if (running.python !== agent.python || running.source !== agent.source) return Effect.succeed(null)
    if (running.room === null || environmentBytes(request.env) > running.room) return Effect.succeed(null)
    const stdin = running.child.stdin
    if (server !== running || stdin === null || stdin.destroyed) return Effect.succeed(null)
    return Effect.gen(function* () {
      const answer = yield* Deferred.make<number, LocalApiError>()
      const id = nextId++
      running.pending.push({ id, answer })
      setRef(running.child.stdout, true)
      // `ID JSON`: the server reads the id and leaves the JSON, which holds the token, to the fork.
      stdin.write(`${id} ${JSON.stringify(request)}\n`)
      // A plain timer, not Effect's timeout, which forks a fiber per request (on every launch's
      // path). At the limit every request the server holds fails, and SIGKILL ends it even if
      // it is stopped.
      const limit = setTimeout(() => {
        stop(running, ended(`did not answer within ${answerLimit.text}; killed`))
        running.child.kill("SIGKILL")
      }, answerLimit.ms)
      limit.unref()
      return yield* Deferred.await(answer).pipe(Effect.ensuring(Effect.sync(() => clearTimeout(limit))))
    })
  }

  const close = Effect.sync(() => {
    const running = server
    server = null
    startsLeft = 0
    if (running !== null) {
      for (const p of running.pending.splice(0)) Effect.runSync(Deferred.fail(p.answer, ended("was closed")))
      running.child.stdin?.end()
    }
  })

  return { fork, close }
}
