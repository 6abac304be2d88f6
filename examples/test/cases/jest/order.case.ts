// A beforeEach declared before useSkyRepl runs before the helper's own: what it launches is
// still the test's, ended after that test, not kept until the file is done.
import { beforeEach, expect, test } from "@jest/globals"
import { useSkyRepl } from "@skyrepl/core/jest"
import { engine } from "../engine.ts"
import { isRunning, record, recorded } from "../record.ts"

let early = ""
const repl = { current: null as ReturnType<typeof useSkyRepl> | null }

beforeEach(async () => {
  // The first test's only: the second checks it ended with the first.
  if (recorded().some((r) => r.label === "early")) return
  early = (await repl.current!.launch({ command: "exec sleep 600" })).instance.name
  record("early", early)
})

repl.current = useSkyRepl(engine)

test("runs with what an earlier beforeEach launched", async () => {
  expect(await isRunning(early)).toBe(true)
})

test("which ended with that test", async () => {
  expect(await isRunning(early)).toBe(false)
  expect((await repl.current!.client.listInstances()).find((i) => i.name === early)?.state).toBe("terminated")
})
