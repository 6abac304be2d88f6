import { Deferred, Duration, Effect, Either, Option, Ref, Schedule, Schema, type Scope, type Stream } from "effect"
import { agentScriptPath } from "../agent-script.ts"
import { boxedPrimitiveProblem } from "../boxed.ts"
import { Allocation } from "../domain/allocation.ts"
import { Instance } from "../domain/instance.ts"
import { Manifest } from "../domain/manifest.ts"
import { type OutputChunk, Run, RunMachine } from "../domain/run.ts"
import { AgentError, type AttachError, type CancelError, InvalidLaunchOptions, type LaunchError, type StoreError } from "../errors.ts"
import type { ExitReport } from "../hub/protocol.ts"
import type { Refusal, SessionHandlers } from "../hub/agent-hub.ts"
import { formatInstanceName, newId, randomHex } from "../naming.ts"
import { checkProviderConfiguration, type InstanceRef } from "../provider.ts"
import { describeParseError } from "../parse-error.ts"
import { decodeDurationOption, type DurationOption, formatDuration, sleepLong } from "../duration.ts"
import { RUNTIME_COMPRESSES_FASTER } from "../output-encoding.ts"
import { attachWith } from "./attach.ts"
import { stateOfExit } from "./exit-state.ts"
import { type CancelResult, cancelRun } from "./cancel.ts"
import { finishRun, refOf, terminateInstance, withProviderRetry } from "./lifecycle.ts"
import type { RunResult, SkyReplService } from "./service.ts"

/**
 * A launch's progress. `terminated` comes only once the termination is confirmed; after a
 * `terminating` that failed (the error is logged), none comes, and a later reaper ends the
 * instance.
 */
export interface LaunchProgress {
  readonly phase: "spawning" | "booting" | "running" | "terminating" | "terminated"
  readonly runId: string
  readonly instance: string
  readonly elapsedMs: number
}

/** What `launch` takes. A key that is none of these is refused (`InvalidLaunchOptions`), not ignored. */
export interface LaunchOptions {
  /** Run with `/bin/sh -c` on the instance. */
  readonly command: string
  /** Provider id; the engine's default (`local`) when absent. */
  readonly provider?: string
  /** Provider-specific spec, e.g. `t4g.nano` or `ubuntu:noble:arm64`. */
  readonly spec?: string
  /**
   * Variables for the command, on top of the instance's own. What Linux can exec bounds them:
   * one variable under 128 KiB, and the command and variables together under 2 MiB less 64 KiB
   * (`InvalidLaunchOptions` past either, before anything is recorded).
   */
  readonly env?: Readonly<Record<string, string>>
  /**
   * An absolute path on the instance to run the command in; the agent's default when absent.
   * One that is not a directory there ends the run `failed`, its `error` saying so.
   */
  readonly workdir?: string
  /** Region, for providers with `capabilities.regions`. */
  readonly region?: string
  /** A spot (preemptible) instance, for providers with `capabilities.spot`. */
  readonly spot?: boolean
  /** The run is killed and ends `timed_out` after this long; the instance is then terminated. */
  readonly maxDuration?: DurationOption
  readonly onProgress?: (event: LaunchProgress) => void
}

/** A launched run. Its instance lives as long as the scope `launch` ran in, or less. */
export interface RunHandle {
  readonly id: string
  readonly instance: { readonly id: string; readonly name: string; readonly provider: string }
  /** All output from the first byte, following live output until the run ends. */
  readonly output: Stream.Stream<OutputChunk, AttachError>
  /** Waits for the run to end. */
  readonly result: Effect.Effect<RunResult>
  readonly cancel: Effect.Effect<CancelResult, CancelError>
}

const envName = /^[A-Za-z_][A-Za-z0-9_]*$/

/**
 * Variables SkyREPL sets on an instance's processes. A run given its own `SKYREPL_INSTANCE`
 * would hand its children another instance's marker (or a name that is none), and the local
 * provider's scans, which find a sandbox's processes by that marker, would then miss them.
 */
const RESERVED_VARIABLES: ReadonlySet<string> = new Set([
  "SKYREPL_INSTANCE",
  "SKYREPL_SANDBOX_PROVIDER",
  "SKYREPL_AGENT_TOKEN",
  "SKYREPL_AGENT_RUN",
  "SKYREPL_AGENT_ALLOW_POWEROFF",
  "SKYREPL_FORK_SERVER_ROOM"
])

/**
 * Linux refuses (E2BIG) any one argument or variable of 128 KiB or more (MAX_ARG_STRLEN, its
 * terminating NUL included), and every instance runs the command on Linux (`sh -c COMMAND`).
 * A NUL cannot be passed at all. Refused here, such a run would start an instance only to fail
 * with exit 127 and the reason buried in its output.
 */
const MAX_ARG_BYTES = 128 * 1024 - 1
const passable = (what: string, text: string): string | null => {
  if (text.includes("\0")) return `${what} holds a NUL byte, which no process can be given`
  const bytes = Buffer.byteLength(text, "utf8")
  return bytes > MAX_ARG_BYTES ? `${what} is ${bytes} bytes; Linux passes at most ${MAX_ARG_BYTES} bytes in one argument or variable` : null
}

const Command = Schema.String.pipe(
  Schema.nonEmptyString({ message: () => "command must not be empty" }),
  // `sh -c "  "` succeeds having run nothing: a command built from an unset variable would
  // report success, and cost an instance for it.
  Schema.filter((command) => command.trim() !== "" || "command must not be only whitespace"),
  Schema.filter((command) => passable("command", command) ?? true)
)

/**
 * The names are checked on the record rather than as its key schema: a key that fails its
 * schema is reported only as "unexpected", without the refinement's message.
 */
const Env = Schema.Record({ key: Schema.String, value: Schema.String }).pipe(
  Schema.filter((env) => {
    const names = Object.keys(env)
    const bad = names.find((name) => !envName.test(name))
    if (bad !== undefined) return `${JSON.stringify(bad)} is not a variable name (letters, digits and _, not starting with a digit)`
    for (const name of names) {
      const problem = passable(name, `${name}=${env[name]}`)
      if (problem !== null) return problem
    }
    const reserved = names.find((name) => RESERVED_VARIABLES.has(name))
    return reserved === undefined || `${reserved} is set by SkyREPL itself and cannot be given (docs/configuration.md, "Set by SkyREPL, not by you")`
  })
)

/**
 * Linux also refuses (E2BIG) a command whose arguments and variables together, a pointer each
 * included, pass a quarter of the stack limit: 2 MiB at the usual 8 MiB. The run's variables go
 * with the instance's own (the agent's, a few KiB), so a run is refused here once it leaves less
 * than ENV_ROOM for those. An instance with a larger stack limit could take more; a run that
 * needs more than 2 MiB of variables is better given a file.
 */
const MAX_EXEC_BYTES = 2 * 1024 * 1024
const ENV_ROOM = 64 * 1024
const execBytes = (command: string, env: Readonly<Record<string, string>>): number => {
  const pointer = 8
  // `/bin/sh -c COMMAND`: three arguments, each with its NUL and pointer.
  let bytes = "/bin/sh\0-c\0".length + Buffer.byteLength(command, "utf8") + 1 + 3 * pointer
  for (const [name, value] of Object.entries(env)) bytes += Buffer.byteLength(name, "utf8") + Buffer.byteLength(value, "utf8") + 2 + pointer
  return bytes
}
const execFits = ({ command, env }: { readonly command: string; readonly env?: Readonly<Record<string, string>> | undefined }) => {
  const bytes = execBytes(command, env ?? {})
  return (
    bytes <= MAX_EXEC_BYTES - ENV_ROOM ||
    `the command and env are ${bytes} bytes together; Linux starts a process with at most ${MAX_EXEC_BYTES} bytes of arguments and variables, and ${ENV_ROOM} of them are kept for the instance's own (pass large values in a file)`
  )
}

const ValidOptions = Schema.Struct({
  command: Command,
  provider: Schema.optional(Schema.String.pipe(Schema.nonEmptyString({ message: () => "provider must not be empty" }))),
  spec: Schema.optional(Schema.String),
  env: Schema.optional(Env),
  workdir: Schema.optional(
    Schema.String.pipe(
      Schema.startsWith("/", { message: () => "workdir must be an absolute path" }),
      Schema.filter((workdir) => passable("workdir", workdir) ?? true)
    )
  ),
  region: Schema.optional(Schema.String),
  spot: Schema.optional(Schema.Boolean)
}).pipe(Schema.filter(execFits))

/**
 * Every option `launch` reads. Any other key is refused rather than dropped: a misspelt
 * `maxDuration` (`maxduration`, `timeout`) left a run meant to stop with no time limit at all.
 */
const LAUNCH_OPTIONS: ReadonlyArray<keyof LaunchOptions> = ["command", "provider", "spec", "env", "workdir", "region", "spot", "maxDuration", "onProgress"]

/**
 * The checks `launch` makes of its options before it touches the store or a provider, for a
 * caller that wants them earlier (the CLI checks its flags before it opens the store).
 */
export const validateLaunchOptions = (options: LaunchOptions) =>
  Effect.gen(function* () {
    // Callers in plain JavaScript (or behind a cast) can pass anything, null included.
    if (typeof options !== "object" || options === null) {
      return yield* new InvalidLaunchOptions({ message: `launch options must be an object, not ${String(options)}` })
    }
    // `new String("x")` was refused as "command: Expected string, actual x".
    const boxed = boxedPrimitiveProblem(options, "launch options")
    if (boxed !== null) return yield* new InvalidLaunchOptions({ message: boxed })
    const unknown = Object.keys(options).find((key) => !LAUNCH_OPTIONS.some((known) => known === key))
    if (unknown !== undefined) {
      return yield* new InvalidLaunchOptions({ message: `${JSON.stringify(unknown)} is not a launch option (${LAUNCH_OPTIONS.join(", ")})` })
    }
    // Called at every phase, its throw only logged: a callback that is not one would warn at
    // each phase of a launch that went on regardless.
    if (options.onProgress !== undefined && typeof options.onProgress !== "function") {
      return yield* new InvalidLaunchOptions({ message: `onProgress must be a function, not ${JSON.stringify(options.onProgress) ?? String(options.onProgress)}` })
    }
    const decoded = Schema.decodeUnknownEither(ValidOptions)({
      command: options.command,
      provider: options.provider,
      spec: options.spec,
      env: options.env,
      workdir: options.workdir,
      region: options.region,
      spot: options.spot
    }, { exact: true, onExcessProperty: "error" })
    if (Either.isLeft(decoded)) {
      return yield* new InvalidLaunchOptions({ message: describeParseError(decoded.left) })
    }
    let maxDurationMs: number | null = null
    if (options.maxDuration !== undefined) {
      // Positive and finite (leaving it out is no limit): decodeDurationOption's own bounds.
      const d = decodeDurationOption(options.maxDuration)
      if (Either.isLeft(d)) return yield* new InvalidLaunchOptions({ message: `maxDuration: ${d.left}` })
      maxDurationMs = Duration.toMillis(d.right)
    }
    return { ...decoded.right, maxDurationMs }
  })

/** A console's last lines as the end of a one-line error message. */
const consoleSuffix = (tail: ReadonlyArray<string>): string =>
  tail.length === 0 ? "" : `; its console's last lines: ${tail.map((line) => JSON.stringify(line)).join(", ")}`

/** Extra time the controller gives the agent to enforce `maxDuration` itself before stepping in. */
const controllerTimeoutGrace = Duration.seconds(5)

/**
 * What an exit report says of the output: null when the controller holds every byte the agent
 * read, else which stream lost what. An agent reports its exit only once every byte is
 * acknowledged; bytes missing mean it gave up a stream (a `next` it could no longer serve), or
 * the report did not come from the agent's run at all.
 */
const lostOutput = (engine: SkyReplService, report: ExitReport): Effect.Effect<string | null, StoreError> =>
  Effect.map(
    Effect.all([engine.store.outputEnd(report.runId, "stdout"), engine.store.outputEnd(report.runId, "stderr")]),
    ([stdout, stderr]) => {
      const lost = [
        ...(stdout < report.stdoutBytes ? [`${report.stdoutBytes - stdout} of its ${report.stdoutBytes} bytes of stdout`] : []),
        ...(stderr < report.stderrBytes ? [`${report.stderrBytes - stderr} of its ${report.stderrBytes} bytes of stderr`] : [])
      ]
      return lost.length === 0 ? null : `the run's output is incomplete: the controller never received ${lost.join(" and ")}`
    }
  )

/** Why this controller asked the agent to cancel the run, when it asked: the agent's report says only "cancelled". */
interface CancelAsked {
  why: string | null
}

/**
 * `started` opens once the launch has recorded the run as running (or given up): an agent that
 * started the run on its own at boot (`Bootstrap.run`) can report its exit before that, and the
 * exit must not be applied to a run still recorded as pending.
 */
const handlersFor = (engine: SkyReplService, runId: string, started: Deferred.Deferred<void>, cancelAsked: CancelAsked): SessionHandlers => {
  const notThisRun = (id: string): Refusal => ({ refused: 404, error: `run ${id} is not this instance's` })
  // Set once the exit is applied: the agent sent every byte before it, so what comes after
  // belongs to no run.
  let exited = false
  return {
    onOutput: (id, stream, offset, data, deflated) => {
      if (id !== runId) return Effect.succeed(notThisRun(id))
      if (exited) return Effect.succeed<Refusal>({ refused: 410, error: `run ${id} has ended` })
      return engine.store.appendOutput(id, stream, offset, data, deflated).pipe(
        Effect.map((next) => ({ next, gap: false })),
        Effect.tap(() => engine.changes.publish(id)),
        Effect.catchAll((error) => {
          if (error.reason === "constraint") {
            return engine.store.outputEnd(id, stream).pipe(Effect.map((next) => ({ next, gap: true })), Effect.orDie)
          }
          // A busy store is asked again (the agent sends the upload again). One that cannot
          // keep output (a full disk, a file made read-only) would keep the agent sending
          // forever and the run going with its output lost: the run ends, failed, which
          // terminates its instance, and the answer tells the agent why.
          if (error.reason === "busy") return Effect.die(error)
          return finishRun(engine, runId, "failed", { error: `the store could not keep the run's output, so the run was stopped: ${error.message}` }).pipe(
            Effect.ignore,
            Effect.zipRight(Effect.die(error))
          )
        })
      )
    },
    onExit: (report) => {
      if (report.runId !== runId) return Effect.succeed(notThisRun(report.runId))
      return Effect.gen(function* () {
        yield* Deferred.await(started)
        const { state, error: said } = stateOfExit(report)
        const error = state === "cancelled" && said === null ? cancelAsked.why : said
        const lost = yield* lostOutput(engine, report)
        exited = true
        // Output lost makes a run that succeeded a failure: its result cannot be trusted whole.
        yield* finishRun(engine, runId, lost !== null && state === "succeeded" ? "failed" : state, {
          // A refused run never ran: its exit 127 is for controllers that know no `refused`.
          exitCode: report.refused === undefined ? report.exitCode : null,
          signal: report.signal,
          error: lost ?? error
        })
      }).pipe(Effect.orDie, Effect.asVoid)
    }
  }
}

const scopeClosedBeforeEnd = "the scope that launched the run closed before it ended"

/**
 * Launches `options.command` on a new instance, scoped: when the scope closes the run is
 * cancelled if still going and the instance is terminated. Every provider call is preceded by
 * a durable record of the intent, so a crash at any point leaves something a reaper can find.
 */
export const launchWith = (
  engine: SkyReplService,
  options: LaunchOptions
): Effect.Effect<RunHandle, LaunchError, Scope.Scope> =>
  Effect.gen(function* () {
    const valid = yield* validateLaunchOptions(options)
    const provider = yield* engine.provider(valid.provider ?? engine.settings.defaultProvider)
    yield* checkProviderConfiguration(provider)
    if (valid.region !== undefined && !provider.capabilities.regions) {
      return yield* new InvalidLaunchOptions({ message: `provider "${provider.id}" has no regions; drop the region` })
    }
    if (valid.spot === true && !provider.capabilities.spot) {
      return yield* new InvalidLaunchOptions({ message: `provider "${provider.id}" has no spot instances; drop spot` })
    }
    const spec = yield* provider.parseSpec(valid.spec, {
      ...(valid.region === undefined ? {} : { region: valid.region }),
      ...(valid.spot === undefined ? {} : { spot: valid.spot })
    })
    const { store, settings, controller } = engine
    const hub = yield* engine.register
    const started = Date.now()
    const manifestId = newId(started)
    const instanceId = newId(started)
    const runId = newId(started)
    const name = formatInstanceName({ controlId: store.controlId, manifestId, instanceId })
    const token = randomHex(24)
    const leaseExpiresAt = started + Duration.toMillis(settings.leaseTtl)
    // The user's callback must not stop a launch or, above all, its termination: a throw is
    // logged and the launch goes on.
    const progress = (phase: LaunchProgress["phase"]) =>
      Effect.try({
        try: () => options.onProgress?.({ phase, runId, instance: name, elapsedMs: Date.now() - started }),
        catch: (thrown) => (thrown instanceof Error ? thrown.message : String(thrown))
      }).pipe(Effect.catchAll((message) => Effect.logWarning(`onProgress threw at "${phase}": ${message}`)))

    const manifest = new Manifest({ id: manifestId, controllerId: controller.id, state: "open", createdAt: started })
    const instance = new Instance({
      id: instanceId,
      name,
      manifestId,
      provider: provider.id,
      spec: spec.canonical,
      region: spec.region,
      providerRef: null,
      state: "requested",
      ownerControllerId: controller.id,
      leaseExpiresAt,
      agentToken: token,
      error: null,
      createdAt: started,
      updatedAt: started
    })
    const run = new Run({
      id: runId,
      manifestId,
      instanceId,
      provider: provider.id,
      command: valid.command,
      env: valid.env ?? {},
      workdir: valid.workdir ?? null,
      maxDurationMs: valid.maxDurationMs,
      state: "pending",
      exitCode: null,
      signal: null,
      error: null,
      ownerControllerId: controller.id,
      createdAt: started,
      startedAt: null,
      endedAt: null
    })

    const recordedRunning = yield* Deferred.make<void>()
    const cancelAsked: CancelAsked = { why: null }
    const session = yield* hub.open(name, token, handlersFor(engine, runId, recordedRunning, cancelAsked), {
      compressOutput: provider.capabilities.agentOnHost === true && RUNTIME_COMPRESSES_FASTER
    })
    const done = yield* Deferred.make<RunResult>()
    engine.live.set(runId, {
      runId,
      instanceId,
      session,
      finished: Deferred.await(done),
      ended: Deferred.isDone(done),
      complete: (result) => Deferred.succeed(done, result).pipe(Effect.asVoid)
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => engine.live.delete(runId)))

    // Asked for by the run's end and by the closing scope, possibly at once: terminateInstance
    // is idempotent, and each call runs to the end even if its fiber is interrupted, so a
    // half-done termination is never taken for a finished one.
    const nothingStarted = yield* Ref.make(false)
    /** The instance as the provider named it once spawned: what `describe` is asked about. */
    const spawnedRef = yield* Ref.make(refOf(instance))
    // Set as soon as the provider has answered the spawn, before the store records it: what this
    // launch started is ended by it whatever the record says by then.
    const spawnedHere = yield* Ref.make<InstanceRef | null>(null)
    // Set once a termination from here succeeded: the second call (the run's end, then the
    // scope) returns at once. terminateInstance reads the record itself, and returns early for
    // one terminated elsewhere, unless this launch spawned it (spawnedHere).
    const terminated = yield* Ref.make(false)
    // The second call tries again after a failed first; the same failure is said once.
    const lastFailure = yield* Ref.make<string | null>(null)
    const terminate = Effect.uninterruptible(
      Effect.gen(function* () {
        if (yield* Ref.get(terminated)) return
        yield* session.shutdown
        yield* progress("terminating")
        // "terminated" is said only of a termination that was confirmed: one that failed is left
        // to a later reaper (the record keeps saying so), and must not be reported done.
        const spawned = yield* Ref.get(spawnedHere)
        yield* terminateInstance(engine, instance, "the instance was terminated", {
          nothingStarted: yield* Ref.get(nothingStarted),
          ...(spawned === null ? {} : { spawned })
        }).pipe(
          Effect.zipRight(Ref.set(terminated, true)),
          Effect.zipRight(progress("terminated")),
          Effect.tapError((error) =>
            Effect.flatMap(Ref.getAndSet(lastFailure, error.message), (said) =>
              said === error.message ? Effect.void : Effect.logError(`terminating ${name}: ${error.message}`)
            )
          ),
          Effect.ignore
        )
      })
    )

    yield* Effect.acquireRelease(store.createLaunch(manifest, instance, run), () =>
      Effect.gen(function* () {
        // A run whose end this process knows needs no look-up: its end was recorded then, or the
        // store failed to, and the termination below ends whatever the record still shows.
        const current = (yield* Deferred.isDone(done))
          ? Option.none<Run>()
          : yield* store.getRun(runId).pipe(Effect.option, Effect.map(Option.flatten))
        if (Option.isSome(current) && !["succeeded", "failed", "cancelled", "timed_out"].includes(current.value.state)) {
          // An agent that has registered is asked to end the run, and given a moment to say how
          // it ended. One that has not (a VM still booting) has nothing to report.
          if (yield* session.hasRegistered) {
            // The agent's report of the cancel, landing first, records the run with this reason.
            cancelAsked.why = scopeClosedBeforeEnd
            yield* session.cancelRun(runId)
            // A finalizer runs uninterruptibly, and a time limit ends its effect by interrupting
            // it: the wait must be interruptible, or an agent that never answers holds the
            // release, and the terminate after it, forever.
            // An interruption that reaches this fiber now (a test's time limit, a second
            // Ctrl-C) ends the wait only: `exit` keeps it from ending the release, whose
            // termination below must still run.
            yield* Effect.interruptible(Deferred.await(done)).pipe(Effect.timeoutOption(Duration.seconds(2)), Effect.exit)
          }
          yield* finishRun(engine, runId, "cancelled", { error: scopeClosedBeforeEnd }).pipe(Effect.ignore)
        }
        yield* terminate
      })
    )

    const runCommand = { runId, command: run.command, env: run.env, workdir: run.workdir, maxDurationMs: run.maxDurationMs }
    const fail = (message: string) =>
      Effect.gen(function* () {
        yield* store.transitionInstance(instanceId, "failed", { error: message }).pipe(Effect.ignore)
        yield* finishRun(engine, runId, "failed", { error: message }).pipe(Effect.ignore)
      })

    yield* Effect.gen(function* () {
      yield* progress("spawning")
      yield* store.transitionInstance(instanceId, "spawning")
      const spawned = yield* withProviderRetry(
        provider.spawn(name, spec, {
          agentUrl: hub.url,
          token,
          heartbeatIntervalMs: Duration.toMillis(settings.heartbeatInterval),
          deadmanTimeoutMs: Duration.toMillis(settings.deadmanTimeout),
          agentScript: agentScriptPath,
          run: runCommand
        })
      ).pipe(Effect.tapError((error) => (error.nothingStarted === true ? Ref.set(nothingStarted, true) : Effect.void)))
      yield* Ref.set(spawnedHere, { name, providerRef: spawned.providerRef, region: spawned.region })
      const bootstrapFailure = spawned.bootstrapFailure ?? null
      yield* store.transitionInstance(instanceId, "booting", {
        providerRef: spawned.providerRef,
        region: spawned.region,
        ...(bootstrapFailure === null ? {} : { error: bootstrapFailure })
      })
      if (bootstrapFailure !== null) yield* Effect.logWarning(bootstrapFailure)
      yield* progress("booting")
      const bootedRef = { name, providerRef: spawned.providerRef, region: spawned.region }
      yield* Ref.set(spawnedRef, bootedRef)
      // Why it never registered is often only on the instance's console (an interpreter that
      // cannot start says so there): its last lines go into the error.
      const bootFailed = (reason: "boot-timeout" | "lost", what: string) =>
        Effect.flatMap(
          provider.consoleTail === undefined ? Effect.succeed<ReadonlyArray<string>>([]) : provider.consoleTail(bootedRef),
          (tail) =>
            Effect.fail(
              new AgentError({
                instance: name,
                reason,
                message: what + (bootstrapFailure === null ? "" : `; ${bootstrapFailure}`) + consoleSuffix(tail)
              })
            )
        )
      const registration = Deferred.await(session.registered).pipe(
        Effect.timeout(settings.bootTimeout),
        Effect.catchTag("TimeoutException", () =>
          bootFailed("boot-timeout", `the agent on ${name} did not register within ${Duration.format(settings.bootTimeout)}`)
        ),
        Effect.as(true)
      )
      // An instance that ends before its agent registers (an interpreter that cannot start, a
      // VM that powers off) will never register: the provider says so long before the boot
      // timeout. It is asked after a pause, and must say "gone" (or "stopping": stopped, or a
      // local process group whose agent is gone) twice in a row: just after a spawn an instance
      // may not show yet (a forked sandbox writes its markers after the fork).
      // The pause doubles after each pair, up to 30 s: most deaths come at once, and a VM that
      // boots for minutes is not worth a DescribeInstances every heartbeat.
      const bootCheck = Duration.max(settings.heartbeatInterval, Duration.seconds(1))
      const longestBootCheck = Duration.max(bootCheck, Duration.seconds(30))
      const pause = yield* Ref.make(bootCheck)
      const goneNow = Effect.zipRight(
        Effect.flatMap(Ref.get(pause), Effect.sleep),
        provider.describe(bootedRef).pipe(
          Effect.map((state) => state === "gone" || state === "stopping"),
          Effect.orElseSucceed(() => false)
        )
      )
      const endedBooting = Effect.zip(goneNow, goneNow).pipe(
        Effect.tap(() => Ref.update(pause, (d) => Duration.min(Duration.times(d, 2), longestBootCheck))),
        Effect.repeat({ until: ([before, now]) => before && now }),
        Effect.zipRight(bootFailed("lost", `${name} ended before its agent registered`))
      )
      // A run cancelled while its instance boots has ended: there is nothing left to start, and
      // the watchdog below terminates the instance. (A booting VM takes minutes.)
      // (raceFirst: the first to end wins, a failure too; raceAll would wait for a success.)
      const booted = yield* Effect.raceFirst(registration, Effect.raceFirst(Deferred.await(done).pipe(Effect.as(false)), endedBooting))
      if (!booted) return
      yield* store.transitionInstance(instanceId, "ready")
      const now = Date.now()
      yield* store.createAllocation(new Allocation({ id: newId(now), instanceId, runId, state: "active", createdAt: now, releasedAt: null }))
      yield* store.transitionInstance(instanceId, "allocated")
      yield* store.transitionRun(runId, "provisioning")
      // Sent even when the provider passed the run at spawn: the agent ignores a run it started.
      yield* session.startRun(runCommand)
      yield* store.transitionRun(runId, "running", { startedAt: Date.now() })
      yield* progress("running")
    }).pipe(
      // A move the store refuses because another process has already ended the run: this
      // controller was held up (stopped past its lease, a laptop asleep) and a reaper took the
      // launch over, or a cancel ended it directly. The run's recorded end is its result, and
      // the watchdogs below end whatever this launch spawned, instead of the launch failing on
      // an "illegal transition terminated → booting" that says nothing of what happened.
      Effect.catchTag("IllegalTransition", (illegal) =>
        Effect.gen(function* () {
          const current = yield* store.getRun(runId).pipe(Effect.orElseSucceed(() => Option.none<Run>()))
          if (Option.isNone(current) || !RunMachine.isTerminal(current.value.state)) return yield* illegal
          // The record's end, handed to the run's handle (finishRun keeps an ended record as it is).
          yield* finishRun(engine, runId, "failed").pipe(Effect.catchAll(() => illegal))
        })
      ),
      Effect.tapError((error) => fail(error.message)),
      Effect.ensuring(Deferred.succeed(recordedRunning, undefined))
    )

    // The run's watchdogs: its own end, the controller-side time limit, and a vanished instance.
    const timeLimit =
      run.maxDurationMs === null
        ? Effect.never
        : Effect.gen(function* () {
            yield* sleepLong(Duration.sum(Duration.millis(run.maxDurationMs!), controllerTimeoutGrace))
            yield* session.cancelRun(runId)
            yield* finishRun(engine, runId, "timed_out", { error: "maxDuration exceeded (enforced by the controller)" })
          })
    const silence = Duration.toMillis(settings.heartbeatInterval) * 3 + 1_000
    /**
     * An agent heard from by no request for longer than its dead-man window (and a heartbeat
     * more) has ended its run itself, or never will: it is wedged (a stopped process), or it and
     * this controller cannot reach each other, and then its dead-man switch has already ended
     * the run. Without this, a stopped agent, which its provider still reports running, held
     * the run (`repl run`, and its instance) for ever. Counted on the monotonic clock, between
     * checks of this watchdog: the agent's switch counts so too, and a machine asleep (a laptop
     * closed over a local run) stops both, where the wall clock would jump past the window.
     */
    const abandonedAfter = Duration.toMillis(settings.deadmanTimeout) + Duration.toMillis(settings.heartbeatInterval)
    const quiet = { seen: session.lastSeen(), since: performance.now() }
    // Stopped or on its way down counts as ended too, once the agent is silent: a machine stopped
    // from outside (or by its own agent) and a local sandbox that lost its agent will not run the
    // command again, and waiting for "gone" would wait for as long as nobody deletes them.
    const vanishedState = Effect.gen(function* () {
      const seen = session.lastSeen()
      if (seen !== quiet.seen) {
        quiet.seen = seen
        quiet.since = performance.now()
      }
      if (Date.now() - seen < silence) return null
      if (performance.now() - quiet.since > abandonedAfter) return "silent" as const
      const state = yield* provider.describe(yield* Ref.get(spawnedRef)).pipe(Effect.orElseSucceed(() => "running" as const))
      return state === "gone" || state === "stopping" ? state : null
    })
    const vanished = vanishedState.pipe(
      // passthrough: the repeat gives the last answer, not the schedule's count.
      Effect.repeat({ schedule: Schedule.passthrough(Schedule.spaced(settings.heartbeatInterval)), until: (state) => state !== null }),
      Effect.flatMap((state) =>
        finishRun(engine, runId, "failed", {
          error:
            state === "gone"
              ? "the instance ended unexpectedly"
              : state === "stopping"
                ? "the instance stopped unexpectedly (its agent is silent and the provider reports it stopping)"
                : `the agent has been silent for longer than its dead-man window (${formatDuration(settings.deadmanTimeout)}): the run is taken as ended`
        })
      )
    )
    yield* Effect.raceAll([Deferred.await(done), timeLimit, vanished]).pipe(
      Effect.ignore,
      Effect.zipRight(terminate),
      Effect.forkScoped
    )

    return {
      id: runId,
      instance: { id: instanceId, name, provider: provider.id },
      output: attachWith(engine, runId, { follow: true }, true),
      result: Deferred.await(done),
      cancel: cancelRun(engine, runId)
    } satisfies RunHandle
  })
