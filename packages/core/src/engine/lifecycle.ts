import { Duration, Effect, Either, Option, Schedule } from "effect"
import { InstanceMachine, type Instance } from "../domain/instance.ts"
import { RunMachine, type Run } from "../domain/run.ts"
import { ProviderError, type StoreError } from "../errors.ts"
import type { InstanceRef, ProviderService } from "../provider.ts"
import type { RunResult, SkyReplService } from "./service.ts"

export type TerminalRunState = RunResult["state"]

/** What is known of how a run ended, beside its state. */
type RunEndPatch = { readonly exitCode?: number | null; readonly signal?: string | null; readonly error?: string | null }

export const toResult = (run: Run): RunResult => ({
  runId: run.id,
  state: RunMachine.isTerminal(run.state) ? (run.state as TerminalRunState) : "failed",
  exitCode: run.exitCode,
  signal: run.signal,
  error: run.error
})

export const refOf = (instance: Instance): InstanceRef => ({
  name: instance.name,
  providerRef: instance.providerRef,
  region: instance.region
})

const providerRetry = Schedule.exponential(Duration.millis(200), 2).pipe(
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(5))
)

/**
 * Runs a provider call, retrying only errors the provider classified as retryable and did not
 * retry itself already.
 */
export const withProviderRetry = <A, R>(
  effect: Effect.Effect<A, ProviderError, R>
): Effect.Effect<A, ProviderError, R> =>
  Effect.retry(effect, { schedule: providerRetry, while: (e) => e.retryable && e.retried !== true })

/**
 * A termination, retried by the engine even after the provider's own retries: one given up on
 * leaves the instance billing until a later pass or its agent's dead-man switch ends it, so
 * here the longer wait is worth it.
 */
export const withTerminationRetry = <A, R>(
  effect: Effect.Effect<A, ProviderError, R>
): Effect.Effect<A, ProviderError, R> => Effect.retry(effect, { schedule: providerRetry, while: (e) => e.retryable })

/**
 * Moves a run to a terminal state once. Whoever gets there first (agent exit, time-out,
 * cancel, a reaper) wins; later callers get the state that won.
 *
 * A store that fails to record the end still ends the run in this process: its handle gets the
 * result (with the failure in `error`), so the launch goes on to terminate the instance and
 * nobody waits forever on a run whose command is over. The store's error is still returned, so
 * the agent is told its report was not taken (and repeats it until the instance ends).
 */
export const finishRun = (
  engine: SkyReplService,
  runId: string,
  state: TerminalRunState,
  patch: RunEndPatch = {}
): Effect.Effect<RunResult, StoreError> =>
  recordEnd(engine, runId, state, patch).pipe(
    Effect.tapError((error) =>
      completeLive(engine, runId, {
        runId,
        state,
        exitCode: patch.exitCode ?? null,
        signal: patch.signal ?? null,
        error: [patch.error, `the store did not record the run's end: ${error.message}`].filter((part) => typeof part === "string").join("; ")
      })
    ),
    Effect.tap((result) => completeLive(engine, runId, result))
  )

const recordEnd = (
  engine: SkyReplService,
  runId: string,
  state: TerminalRunState,
  patch: RunEndPatch
): Effect.Effect<RunResult, StoreError> =>
  // Built when run, not when called: `endedAt` is the time of the end, and callers build their
  // watchdogs' ends up front.
  Effect.suspend(() => {
    const missing: RunResult = { runId, state: "failed", exitCode: null, signal: null, error: "run record missing" }
    const endedAt = Date.now()
    // The record as it is, when the move was refused: it ended already, or it is in a state
    // that cannot take `state`.
    const fromCurrent = Effect.gen(function* () {
      const current = yield* engine.store.getRun(runId)
      if (Option.isNone(current)) return missing
      if (RunMachine.isTerminal(current.value.state)) return toResult(current.value)
      // A run that never started cannot time out; it failed to start in time.
      const target = RunMachine.canTransition(current.value.state, state) ? state : "failed"
      const moved = yield* engine.store
        .transitionRun(runId, target, { ...patch, endedAt })
        .pipe(
          Effect.catchTag("IllegalTransition", () =>
            engine.store.getRun(runId).pipe(Effect.map((r) => Option.getOrElse(r, () => current.value)))
          )
        )
      return toResult(moved)
    })
    // Most runs end from `running`, which can take every end: the move is tried first, and the
    // record is read only when it is refused (one statement instead of two on the common path).
    return engine.store.transitionRun(runId, state, { ...patch, endedAt }).pipe(
      Effect.map(toResult),
      Effect.catchTag("IllegalTransition", () => fromCurrent),
      Effect.catchIf(
        (error): error is StoreError => error._tag === "StoreError" && error.reason === "not-found",
        () => Effect.succeed(missing)
      )
    )
  })

/** Hands a run's result to its handle in this process (the first result wins) and wakes its readers. */
const completeLive = (engine: SkyReplService, runId: string, result: RunResult): Effect.Effect<void> =>
  Effect.gen(function* () {
    const live = engine.live.get(runId)
    if (live !== undefined) yield* live.complete(result)
    yield* engine.changes.publish(runId)
  })

/** Polls `describe` until the provider says the resource is gone. */
const confirmGone = (provider: ProviderService, ref: InstanceRef) =>
  provider.describe(ref).pipe(
    Effect.flatMap((state) =>
      state === "gone"
        ? Effect.void
        : Effect.fail(new ProviderError({ provider: provider.id, operation: "describe", reason: "transient", message: `${ref.name} is still ${state}` }))
    ),
    Effect.retry(
      Schedule.exponential(Duration.millis(50), 1.5).pipe(
        Schedule.union(Schedule.spaced(Duration.seconds(2))),
        Schedule.upTo(Duration.seconds(60))
      )
    )
  )

/**
 * Ends an instance and everything on it: runs still going end as `failed` with `why`
 * (unless already over), allocations are released, the provider is asked to terminate, and
 * the record becomes `terminated` only once the provider confirms it is gone. On failure the
 * record stays `terminating` with its lease, so a later reaper retries.
 *
 * The provider is asked even when the store fails on the way (a full disk, a removed file):
 * the bookkeeping then waits for a later reaper, but the instance does not keep running
 * meanwhile. The store's error is returned once the provider has answered.
 */
export const terminateInstance = (
  engine: SkyReplService,
  instance: Instance,
  why: string,
  options: {
    /** The provider refused to spawn it before creating anything: there is nothing to end. */
    readonly nothingStarted?: boolean
    /**
     * This process spawned it, as this ref. The provider is then asked to end it even when the
     * record already says `terminated`: another process may have recorded its end before it
     * existed (this controller stopped past its lease while its spawn was under way, and a
     * reaper found nothing to end), and it must not then outlive its record.
     */
    readonly spawned?: InstanceRef
  } = {}
): Effect.Effect<void, ProviderError | StoreError> =>
  Effect.gen(function* () {
    const recorded = yield* Effect.either(
      Effect.gen(function* () {
        const runs = yield* engine.store.listRunsForInstance(instance.id)
        for (const run of runs) {
          if (!RunMachine.isTerminal(run.state)) yield* finishRun(engine, run.id, "failed", { error: why })
        }
        const allocations = yield* engine.store.listAllocations({ states: ["active"], instanceId: instance.id })
        for (const allocation of allocations) {
          yield* engine.store.transitionAllocation(allocation.id, "released", Date.now()).pipe(Effect.catchTag("IllegalTransition", () => Effect.void))
        }
        const fresh = Option.getOrElse(yield* engine.store.getInstance(instance.id), () => instance)
        if (fresh.state !== "terminating" && fresh.state !== "terminated") {
          yield* engine.store
            .transitionInstance(fresh.id, "terminating")
            .pipe(Effect.catchTag("IllegalTransition", () => Effect.void))
        }
        return fresh
      })
    )
    if (Either.isRight(recorded) && recorded.right.state === "terminated" && options.spawned === undefined) return
    // The store's copy when it answered: it may know the provider's ref the caller's copy lacks.
    const fresh = Either.getOrElse(recorded, () => instance)
    // What this process spawned, when the record never learnt it (it ended before the spawn did).
    const ref = fresh.providerRef === null && options.spawned !== undefined ? options.spawned : refOf(fresh)
    if (options.nothingStarted === true) {
      if (Either.isLeft(recorded)) return yield* recorded.left
      yield* engine.store.transitionInstance(fresh.id, "terminated").pipe(Effect.catchTag("IllegalTransition", () => Effect.void))
      yield* engine.store.closeManifest(fresh.manifestId).pipe(Effect.ignore)
      return
    }
    const provider = yield* engine.provider(fresh.provider).pipe(
      Effect.catchTag("UnknownProvider", () =>
        new ProviderError({
          provider: fresh.provider,
          operation: "terminate",
          reason: "unavailable",
          message: `provider "${fresh.provider}" is not configured in this process; ${fresh.name} is left for one that has it`
        })
      )
    )
    yield* withTerminationRetry(provider.terminate(ref))
    yield* confirmGone(provider, ref)
    if (Either.isLeft(recorded)) return yield* recorded.left
    yield* engine.store
      .transitionInstance(fresh.id, "terminated")
      .pipe(Effect.catchTag("IllegalTransition", () => Effect.void))
    yield* engine.store.closeManifest(fresh.manifestId).pipe(Effect.ignore)
  })

/** Whether a process with this pid exists on this machine (signal 0 checks without sending). */
const pidAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return typeof error === "object" && error !== null && "code" in error && error.code === "EPERM"
  }
}

/**
 * Owners of `live` instances that are gone: controllers on this machine whose process is gone,
 * and controllers with no row, since an engine removes its row as it closes (an instance it
 * still owns then is one whose termination failed). Their leases have not run out yet, but
 * there is nobody left to renew them: waiting would only add the TTL to the bill. A pid that
 * was reused keeps its instances until the lease expires.
 */
const deadOwners = (engine: SkyReplService, live: ReadonlyArray<Instance>) =>
  Effect.gen(function* () {
    const owners = new Set(live.flatMap((i) => (i.ownerControllerId === null || i.ownerControllerId === engine.controller.id ? [] : [i.ownerControllerId])))
    const dead = new Set<string>()
    for (const owner of owners) {
      const controller = yield* engine.store.getController(owner)
      if (Option.isNone(controller) || (controller.value.hostname === engine.controller.hostname && !pidAlive(controller.value.pid))) dead.add(owner)
    }
    return dead
  })

/**
 * Forgets the rows of controllers on this machine whose process is gone (`deadOwners`' rule)
 * once nothing they owned is left live. A controller removes its own row as it closes; one that
 * was killed leaves it, with its control secret, for ever otherwise. Housekeeping: a store that
 * cannot be written keeps them, silently, until one that can.
 */
const forgetDeadControllers = (engine: SkyReplService) =>
  Effect.gen(function* () {
    const controllers = yield* engine.store.listControllers
    const dead = controllers.filter(
      (c) => c.id !== engine.controller.id && c.hostname === engine.controller.hostname && !pidAlive(c.pid)
    )
    yield* Effect.forEach(dead, (c) => engine.store.removeIdleController(c.id), { discard: true })
  }).pipe(Effect.ignore)

/**
 * Lease reaping (cleanup layer 2): takes over every live instance whose owner stopped renewing
 * (or, on this machine, whose owner's process is gone) and ends it. Runs at engine start-up and
 * then every lease TTL; errors are kept for the next pass, never raised into the caller's work.
 *
 * It looks before it claims: a pass that finds nothing to take over writes nothing, so a
 * command that only reads (`repl run list`) never registers itself or takes the write lock.
 */
export const reapExpired = (engine: SkyReplService): Effect.Effect<void> =>
  Effect.gen(function* () {
    const now = Date.now()
    const leaseExpiresAt = now + Duration.toMillis(engine.settings.leaseTtl)
    // A controller alive enough to reap is alive enough to hold its own leases. Renewing them
    // first means a starved renewal fiber (a loaded machine, a long GC) never makes this process
    // reap the instances it is still launching or running.
    if (engine.registered()) yield* engine.store.renewLeases(engine.controller.id, leaseExpiresAt).pipe(Effect.ignore)
    const live = yield* engine.store.listInstances({ states: InstanceMachine.states.filter((s) => s !== "terminated") })
    const foreign = live.filter((i) => i.ownerControllerId !== engine.controller.id)
    const lapsed = (i: Instance) => i.leaseExpiresAt === null || i.leaseExpiresAt < now
    const dead = yield* deadOwners(engine, foreign)
    const ownerDead = (i: Instance) => i.ownerControllerId !== null && dead.has(i.ownerControllerId)
    if (!foreign.some(lapsed) && dead.size === 0) return
    const claim = Effect.gen(function* () {
      yield* engine.register
      const expired = yield* engine.store.claimExpiredInstances(engine.controller.id, now, leaseExpiresAt)
      const orphaned = yield* Effect.forEach(foreign.filter(ownerDead), (instance) =>
        engine.store.claimInstance(instance.id, engine.controller.id, leaseExpiresAt)
      )
      return [...new Map([...expired, ...orphaned].map((i) => [i.id, i] as const)).values()]
    })
    // A store that can be read but not written (a full disk, a read-only home) cannot record a
    // claim. The instances of owners known dead are ended all the same, through the provider
    // alone: terminating is idempotent, so another reaper doing the same is harmless, and the
    // records are brought up to date by the first process that can write the store. A lapsed
    // lease is no proof then: a live owner cannot renew in that store either. A busy store is
    // left for the next pass, when the claim will go through.
    const claimed = yield* claim.pipe(
      Effect.catchIf(
        (error): error is StoreError => error._tag === "StoreError" && error.reason === "io",
        (error) =>
          Effect.as(
            Effect.logWarning(`lease reaper: cannot take over abandoned instances (${error.message}); ending them without recording it`),
            foreign.filter(ownerDead)
          )
      )
    )
    yield* Effect.forEach(
      claimed.filter((i) => engine.providerIds.includes(i.provider)),
      // Uninterruptible, as a launch's own termination is: a short-lived command (a
      // `repl run attach` whose run this ends) would otherwise close its engine in the middle,
      // leaving the record `terminating` for the next process to finish.
      (instance) =>
        Effect.uninterruptible(
          terminateInstance(engine, instance, "the controller that owned this instance stopped renewing its lease").pipe(
            Effect.catchAll((error) =>
              Effect.logWarning(
                // terminateInstance returns the store's failure only once the provider has ended the instance.
                error._tag === "StoreError"
                  ? `reaped ${instance.name}, but the store could not record it: ${error.message}`
                  : `reaping ${instance.name} failed: ${error.message}`
              )
            )
          )
        ),
      { concurrency: 8, discard: true }
    )
  }).pipe(
    Effect.catchAll((error) => Effect.logWarning(`lease reaper: ${error.message}`)),
    Effect.zipRight(forgetDeadControllers(engine))
  )

export const isInstanceLive = (instance: Instance): boolean => !InstanceMachine.isTerminal(instance.state)
