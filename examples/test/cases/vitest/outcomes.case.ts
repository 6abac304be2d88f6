// A test that passes, one that fails, one that times out: each instance is ended when its test
// ends. The last test checks that, from inside the same run.
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

test("every instance of the earlier tests is terminated", async ({ skyreplClient }) => {
  expect(await within(10_000, () => recorded().some((r) => r.label.startsWith("late-launch")))).toBe(true)
  const earlier = recorded()
  expect(earlier.map((r) => r.label)).toEqual(["passed", "failed", "timed-out", "late-launch-refused"])
  const instances = await skyreplClient.listInstances()
  for (const { name } of earlier.filter((r) => r.name !== "-")) {
    expect(await isRunning(name)).toBe(false)
    expect(instances.find((i) => i.name === name)?.state).toBe("terminated")
  }
})
