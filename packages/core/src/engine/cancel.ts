import { Duration, Effect, Option, Schedule, Schema } from "effect"
import { RunMachine, type RunState } from "../domain/run.ts"
import { type CancelError, RunNotFound } from "../errors.ts"
import { ControlCancelResponse } from "../hub/protocol.ts"
import { finishRun, terminateInstance } from "./lifecycle.ts"
import type { LiveRun, SkyReplService } from "./service.ts"

/** How a cancel ended. Cancelling twice is not an error: the second says `already-finished`. */
export interface CancelResult {
  readonly runId: string
  readonly state: RunState
  readonly outcome: "already-finished" | "cancelled" | "cancelled-by-owner" | "terminated-directly"
}

/** A live owner answers within milliseconds; one that does not is stopped or cut off. */
const ownerAnswerTimeout = Duration.seconds(5)

/** How long a run may take to die after its agent was told to cancel it. */
const cancelGrace = Duration.seconds(5)

const cancelLive = (engine: SkyReplService, live: LiveRun) =>
  Effect.gen(function* () {
    // No agent yet (a VM still booting): nobody to tell and nothing running. The run ends now,
    // which stops the launch's wait for the agent and terminates the instance; an owner asked
    // by another process answers at once, well within that process's patience.
    if (!(yield* live.session.hasRegistered)) {
      return yield* finishRun(engine, live.runId, "cancelled", { error: "cancelled before its agent started" })
    }
    yield* live.session.cancelRun(live.runId)
    const done = yield* live.finished.pipe(Effect.timeoutOption(cancelGrace))
    // An agent that does not answer in time is not waited for: the run is over for the user,
    // and the instance's termination ends whatever is left.
    return Option.isSome(done) ? done.value : yield* finishRun(engine, live.runId, "cancelled", { error: "the agent did not confirm the cancel in time" })
  })

/** Asks the live controller that owns the run to cancel it; `None` when it cannot be reached. */
const askOwner = (hubUrl: string, secret: string, runId: string) =>
  Effect.tryPromise({
    try: (signal) =>
      fetch(`${hubUrl}/v1/control/runs/${runId}/cancel`, {
        method: "POST",
        headers: { authorization: `Bearer ${secret}` },
        signal
      }).then((res) => (res.ok ? res.json() : Promise.reject(new Error(`owner answered ${res.status}`)))),
    catch: (error) => error
  }).pipe(
    Effect.flatMap(Schema.decodeUnknown(ControlCancelResponse)),
    Effect.timeout(ownerAnswerTimeout),
    Effect.option
  )

const waitTerminal = (engine: SkyReplService, runId: string) =>
  engine.store.getRun(runId).pipe(
    Effect.flatMap((run) =>
      Option.isSome(run) && RunMachine.isTerminal(run.value.state) ? Effect.succeed(Option.some(run.value)) : Effect.fail("pending" as const)
    ),
    Effect.retry(Schedule.spaced(Duration.millis(100)).pipe(Schedule.upTo(Duration.seconds(10)))),
    Effect.catchAll(() => Effect.succeed(Option.none()))
  )

export const cancelRun = (engine: SkyReplService, runId: string): Effect.Effect<CancelResult, CancelError> =>
  Effect.gen(function* () {
    const found = yield* engine.store.getRun(runId)
    if (Option.isNone(found)) return yield* new RunNotFound({ runId })
    const run = found.value
    if (RunMachine.isTerminal(run.state)) return { runId, state: run.state, outcome: "already-finished" } as const

    const live = engine.live.get(runId)
    if (live !== undefined) {
      const result = yield* cancelLive(engine, live)
      return { runId, state: result.state, outcome: "cancelled" } as const
    }

    const owner = run.ownerControllerId === null ? Option.none() : yield* engine.store.getController(run.ownerControllerId)
    if (Option.isSome(owner) && owner.value.id !== engine.controller.id && owner.value.leaseExpiresAt > Date.now()) {
      const answered = yield* askOwner(owner.value.hubUrl, owner.value.secret, runId)
      if (Option.isSome(answered)) {
        const settled = yield* waitTerminal(engine, runId)
        const state = Option.match(settled, { onNone: () => "cancelled" as RunState, onSome: (r) => r.state })
        return { runId, state, outcome: "cancelled-by-owner" } as const
      }
    }

    // Nobody alive hosts the run: take the instance over and end it from here.
    yield* engine.register
    const now = Date.now()
    const instance = yield* engine.store.claimInstance(run.instanceId, engine.controller.id, now + Duration.toMillis(engine.settings.leaseTtl))
    const result = yield* finishRun(engine, runId, "cancelled", { error: "cancelled while its controller was gone" })
    yield* terminateInstance(engine, instance, "cancelled")
    return { runId, state: result.state, outcome: "terminated-directly" } as const
  })

/** The owner side of a cross-process cancel: answers with the run's state afterwards. */
export const handleControlCancel = (engine: SkyReplService, runId: string): Effect.Effect<string> =>
  cancelRun(engine, runId).pipe(
    Effect.map((r) => r.state),
    Effect.catchAll((error) => Effect.succeed(`error: ${error._tag}`))
  )
