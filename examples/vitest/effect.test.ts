// @effect/vitest: the engine is a layer shared by the block's tests, and each `it.scoped` test
// has its own Scope, so what it launches is terminated when that test ends.
import { layer } from "@effect/vitest"
import { launch, listInstances } from "@skyrepl/core"
import { Chunk, Effect, Stream } from "effect"
import { expect } from "vitest"
import { SkyReplLive } from "./skyrepl.ts"

const text = (chunks: Chunk.Chunk<{ readonly data: Uint8Array }>) =>
  Chunk.toReadonlyArray(chunks).map((c) => Buffer.from(c.data).toString("utf8")).join("")

// excludeTestServices: the engine's timers (lease renewal, time limits, boot timeout) must run on
// the real clock; under TestClock they would never fire.
layer(SkyReplLive, { excludeTestServices: true })("SkyREPL in Effect tests", (it) => {
  it.scoped("launch streams a command's output", () =>
    Effect.gen(function* () {
      const run = yield* launch({ command: "echo hello from $(hostname)" })
      const output = yield* run.output.pipe(Stream.runCollect)
      expect(text(output)).toBe(`hello from ${run.instance.name}\n`)
      expect((yield* run.result).state).toBe("succeeded")
    })
  )

  let held = ""
  it.scoped("an instance still running when the test ends…", () =>
    Effect.gen(function* () {
      const run = yield* launch({ command: "exec sleep 600" })
      held = run.instance.name
    })
  )

  it.effect("…is terminated when that test's scope closes", () =>
    Effect.gen(function* () {
      const instances = yield* listInstances()
      expect(instances.find((i) => i.name === held)?.state).toBe("terminated")
    })
  )
})
