// A test that passes, one that fails, one that times out, and a run from beforeAll: each test's
// instance is ended after that test; the beforeAll one lives until the file is done (checked by
// the test that runs this case, once Jest has finished).
import { beforeAll, expect, test } from "@jest/globals"
import { useSkyRepl } from "@skyrepl/core/jest"
import { engine } from "../engine.ts"
import { forever, isRunning, record, recorded } from "../record.ts"

const repl = useSkyRepl(engine)

let shared = ""
beforeAll(async () => {
  shared = (await repl.launch({ command: "exec sleep 600" })).instance.name
  record("file", shared)
})

test("passes", async () => {
  record("passed", (await repl.launch({ command: "exec sleep 600" })).instance.name)
})

test("fails", async () => {
  record("failed", (await repl.launch({ command: "exec sleep 600" })).instance.name)
  expect("the test").toBe("failing on purpose")
})

test("times out", async () => {
  record("timed-out", (await repl.launch({ command: "exec sleep 600" })).instance.name)
  await forever()
}, 1_000)

test("the earlier tests' instances are terminated, the file's is not", async () => {
  const instances = await repl.client.listInstances()
  // leak.case.ts may run beside this file and record into the same list.
  const mine = recorded().filter((r) => r.label !== "leaked")
  for (const { label, name } of mine) {
    const state = instances.find((i) => i.name === name)?.state
    if (label === "file") {
      expect(await isRunning(name)).toBe(true)
      expect(state).toBe("allocated")
    } else {
      expect(await isRunning(name)).toBe(false)
      expect(state).toBe("terminated")
    }
  }
  expect(mine.map((r) => r.label)).toEqual(["file", "passed", "failed", "timed-out"])
})
