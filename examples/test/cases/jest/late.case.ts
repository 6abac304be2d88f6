// A test that times out and launches afterwards, while the next test runs: the launch is
// refused (its test has ended), not charged to the test running then.
import { expect, test } from "@jest/globals"
import { useSkyRepl } from "@skyrepl/core/jest"
import { engine } from "../engine.ts"
import { isRunning, record, recorded } from "../record.ts"

const repl = useSkyRepl(engine)
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

test(
  "times out, then launches",
  async () => {
    // Past its limit: the next test has begun by the time this body goes on.
    await pause(1_500)
    try {
      record("late", (await repl.launch({ command: "exec sleep 600" })).instance.name)
    } catch {
      record("late-refused", "-")
    }
  },
  1_000
)

test("the next test keeps its own", async () => {
  const run = await repl.launch({ command: "exec sleep 600" })
  record("next", run.instance.name)
  await pause(1_500)
  expect(recorded().map((r) => r.label)).toEqual(["next", "late-refused"])
  expect(await isRunning(run.instance.name)).toBe(true)
})

test("every earlier test's instance is terminated", async () => {
  for (const { name } of recorded().filter((r) => r.name !== "-")) expect(await isRunning(name)).toBe(false)
})
