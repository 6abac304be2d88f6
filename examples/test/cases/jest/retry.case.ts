// A test.concurrent test retried (jest.retryTimes): each attempt's instance is that attempt's,
// ended once the attempt is done, the failed first one too, before the next sequential test.
import { expect, jest, test } from "@jest/globals"
import { useSkyRepl } from "@skyrepl/core/jest"
import { engine } from "../engine.ts"
import { isRunning, record, recorded } from "../record.ts"

jest.retryTimes(1, { retryImmediately: true })
const repl = useSkyRepl(engine)

let attempts = 0
test.concurrent("fails the first time", async () => {
  attempts += 1
  record(`attempt-${attempts}`, (await repl.launch({ command: "exec sleep 600" })).instance.name)
  if (attempts === 1) throw new Error("failing on purpose, the first time")
})

test("every attempt's instance is terminated", async () => {
  expect(recorded().map((r) => r.label)).toEqual(["attempt-1", "attempt-2"])
  for (const { name } of recorded()) expect(await isRunning(name)).toBe(false)
})
