// Tests run with test.concurrent, for which Jest runs no beforeEach or afterEach: each one's
// instance is its own, lives while that test runs, and is ended soon after that test ends,
// passed or timed out, while the others still run; a sequential test beside them keeps its own.
import { expect, test } from "@jest/globals"
import { useSkyRepl } from "@skyrepl/core/jest"
import { engine } from "../engine.ts"
import { forever, isRunning, record, recorded } from "../record.ts"

const repl = useSkyRepl(engine)
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const nameOf = (label: string): string => recorded().find((r) => r.label === label)?.name ?? `no ${label} recorded`

test.concurrent("slow", async () => {
  const run = await repl.launch({ command: "exec sleep 600" })
  record("slow", run.instance.name)
  await pause(4_000)
  // Its neighbours ended meanwhile: their ends ended their instances, and not this one.
  expect(await isRunning(run.instance.name)).toBe(true)
  expect(await isRunning(nameOf("quick"))).toBe(false)
  expect(await isRunning(nameOf("timed-out"))).toBe(false)
})

test.concurrent("quick", async () => {
  const run = await repl.launch({ command: "exec sleep 600" })
  record("quick", run.instance.name)
  await pause(300)
  expect(await isRunning(run.instance.name)).toBe(true)
})

test.concurrent(
  "times out",
  async () => {
    record("timed-out", (await repl.launch({ command: "exec sleep 600" })).instance.name)
    await forever()
  },
  1_000
)

test("sequential", async () => {
  record("sequential", (await repl.launch({ command: "exec sleep 600" })).instance.name)
})

test("every earlier test's instance is terminated", async () => {
  const instances = await repl.client.listInstances()
  const mine = recorded()
  expect(mine.map((r) => r.label).sort()).toEqual(["quick", "sequential", "slow", "timed-out"])
  for (const { name } of mine) {
    expect(await isRunning(name)).toBe(false)
    expect(instances.find((i) => i.name === name)?.state).toBe("terminated")
  }
})
