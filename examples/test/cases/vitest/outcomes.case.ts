// A test that passes, one that fails, one that times out (in its body, and before it while its
// fixture launches): each instance is ended when its test ends. The last test checks that, from inside the same run.
import { expect } from "vitest"
import { forever, isRunning, record, recorded, within } from "../record.ts"
import { test } from "./skyrepl.ts"

test("passes", async ({ run }) => {
  record("passed", run.instance.name)
})

test("fails", async ({ repl }) => {
  record("failed", (await repl.launch({ command: "exec sleep 600" })).instance.name)
  expect("the test").toBe("failing on purpose")
})

test("times out", async ({ repl }) => {
  record("timed-out", (await repl.launch({ command: "exec sleep 600" })).instance.name)
  // Still running after its timeout: a launch it makes now must be refused, not leaked.
  setTimeout(() => {
    repl.launch({ command: "exec sleep 600" }).then(
      (late) => record("late-launch-accepted", late.instance.name),
      () => record("late-launch-refused", "-")
    )
  }, 1_500)
  await forever()
}, 1_000)

// Times out before its body starts, while the `run` fixture is still launching. (Vitest still
// calls the body once the fixture is ready, after the test has ended; the run is over by then.)
test("times out while its run fixture launches", async ({ run }) => {
  record("late-body", run.instance.name)
}, 1)

test("every instance of the earlier tests is terminated", async ({ skyreplClient }) => {
  expect(await within(10_000, () => recorded().some((r) => r.label.startsWith("late-launch")))).toBe(true)
  const earlier = recorded()
  expect(earlier.map((r) => r.label).filter((label) => label !== "late-body")).toEqual(["passed", "failed", "timed-out", "late-launch-refused"])
  const instances = await skyreplClient.listInstances()
  for (const { name } of earlier.filter((r) => r.name !== "-")) {
    expect(await isRunning(name)).toBe(false)
    expect(instances.find((i) => i.name === name)?.state).toBe("terminated")
  }
  // The fixture's launch of the test that timed out before its body is in none of the records:
  // every instance this file made is, so none may be left in any other state or running.
  expect(instances.filter((i) => i.state !== "terminated").map((i) => i.name)).toEqual([])
  for (const { name } of instances) expect(await isRunning(name)).toBe(false)
})
