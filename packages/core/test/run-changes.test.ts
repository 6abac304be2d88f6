import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option, Scope } from "effect"
import * as RunChanges from "../src/engine/run-changes.ts"

/** Lets every fiber that can run do so, then says whether `fiber` has finished. */
const finished = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
    return Option.isSome(yield* Fiber.poll(fiber))
  })

describe("run changes", () => {
  it.scoped("a listener is woken by its own run's changes and by no other run's", () =>
    Effect.gen(function* () {
      const changes = RunChanges.make()
      const next = yield* changes.listen("run-a")
      const waiting = yield* Effect.fork(next)
      yield* changes.publish("run-b")
      expect(yield* finished(waiting)).toBe(false)
      yield* changes.publish("run-a")
      expect(yield* finished(waiting)).toBe(true)
    })
  )

  it.scoped("changes made before the wait are kept, and several count as one", () =>
    Effect.gen(function* () {
      const changes = RunChanges.make()
      const next = yield* changes.listen("run-a")
      yield* changes.publish("run-a")
      yield* changes.publish("run-a")
      expect(yield* finished(yield* Effect.fork(next))).toBe(true)
      expect(yield* finished(yield* Effect.fork(next))).toBe(false)
    })
  )

  it.effect("every listener of a run is woken, and one whose scope closed no longer listens", () =>
    Effect.gen(function* () {
      const changes = RunChanges.make()
      const first = yield* Scope.make()
      const second = yield* Scope.make()
      const nextFirst = yield* Scope.extend(changes.listen("run-a"), first)
      const nextSecond = yield* Scope.extend(changes.listen("run-a"), second)
      yield* changes.publish("run-a")
      expect(yield* finished(yield* Effect.fork(nextFirst))).toBe(true)
      expect(yield* finished(yield* Effect.fork(nextSecond))).toBe(true)

      yield* Scope.close(first, Exit.void)
      const waiting = yield* Effect.fork(nextSecond)
      yield* changes.publish("run-a")
      expect(yield* finished(waiting)).toBe(true)
      // The closed listener's queue is shut down: waiting on it is interrupted, not left hanging.
      const closed = yield* Effect.exit(nextFirst)
      expect(Exit.isInterrupted(closed)).toBe(true)
      yield* Scope.close(second, Exit.void)
    })
  )
})
