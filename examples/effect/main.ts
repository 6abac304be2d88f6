// SkyREPL in an Effect program: launch a command, replay its output from a byte offset, and
// cancel a run from another fiber. Every instance lives inside a Scope and is gone when it closes.
import { attach, cancel, launch, listInstances, liveInstanceStates, SkyRepl, SkyReplConfig } from "@skyrepl/core"
import { LocalProvider } from "@skyrepl/provider-local"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { Cause, Chunk, Console, Effect, Exit, Fiber, Stream } from "effect"
import { tmpdir } from "node:os"
import { join } from "node:path"

// A state home of its own, so the example never touches ~/.repl; SKYREPL_HOME overrides it. It
// stays put between runs: a run that was killed leaves its instances to the next one to end.
const home = process.env["SKYREPL_HOME"] ?? join(tmpdir(), "skyrepl-example-effect")

const SkyReplLive = SkyRepl.layer({
  providers: [LocalProvider.layer({ home })],
  store: SqliteStore.layerFromHome(home),
  // The environment's SKYREPL_* settings (lease TTL, timings), with the home chosen above.
  config: SkyReplConfig.fromEnv({ home })
})

const text = (data: Uint8Array) => Buffer.from(data).toString("utf8")

const program = Effect.gen(function* () {
  // 1. launch: stream the output as it is written. The run's instance is terminated when the run
  //    ends, and at the latest when this scope closes (error, interruption, Ctrl-C).
  const first = yield* Effect.scoped(
    Effect.gen(function* () {
      const run = yield* launch({ command: "for i in 1 2 3; do echo line $i; sleep 0.1; done", maxDuration: "1 minute" })
      yield* Console.log(`launched ${run.id} on ${run.instance.name}`)
      yield* run.output.pipe(
        Stream.runForEach((chunk) => Console.log(`${chunk.stream}@${chunk.offset} ${JSON.stringify(text(chunk.data))}`))
      )
      const result = yield* run.result
      yield* Console.log(`result: ${result.state}, exit ${result.exitCode}`)
      return run.id
    })
  )

  // 2. attach: replay a run's output from any byte offset, with no gap and no duplicate. Here
  //    from byte 7 of stdout ("line 1\n" is 7 bytes), without following (the run is over).
  const replayed = yield* attach(first, { from: { stdout: 7 }, follow: false }).pipe(Stream.runCollect)
  const rest = Chunk.toReadonlyArray(replayed).map((c) => text(c.data)).join("")
  yield* Console.log(`attach from byte 7: ${JSON.stringify(rest)}`)

  // 3. cancel: a command that would run for ten minutes, cancelled once it has started. `cancel`
  //    works from any process and is idempotent: the second call says "already-finished".
  yield* Effect.scoped(
    Effect.gen(function* () {
      const run = yield* launch({ command: "echo waiting; exec sleep 600" })
      yield* run.output.pipe(Stream.take(1), Stream.runDrain)
      const cancelled = yield* cancel(run.id)
      const again = yield* cancel(run.id)
      const result = yield* run.result
      yield* Console.log(`cancel: ${cancelled.outcome}, then ${again.outcome}; the run ended ${result.state}`)
    })
  )

  // Nothing is left running: every instance this program launched is terminated.
  const live = yield* listInstances({ states: liveInstanceStates })
  yield* Console.log(`live instances: ${live.length}`)
})

// Ctrl-C and SIGTERM interrupt the program, so that its scopes close and end their instances:
// with Effect.runPromise alone the process would die of the signal with its instances running
// (until the next SkyREPL process or the agent's dead-man switch ends them). @effect/platform's
// runMain (NodeRuntime, BunRuntime) does the same.
const fiber = Effect.runFork(program.pipe(Effect.provide(SkyReplLive)))
const interrupt = () => Effect.runFork(Fiber.interrupt(fiber))
process.once("SIGINT", interrupt)
process.once("SIGTERM", interrupt)
const exit = await Effect.runPromise(Fiber.await(fiber))
process.off("SIGINT", interrupt)
process.off("SIGTERM", interrupt)
if (Exit.isFailure(exit)) {
  console.error(Cause.isInterruptedOnly(exit.cause) ? "interrupted; every instance was terminated" : Cause.pretty(exit.cause))
  process.exitCode = Cause.isInterruptedOnly(exit.cause) ? 130 : 1
}
