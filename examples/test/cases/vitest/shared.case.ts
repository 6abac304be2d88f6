// The file-scoped fixture: an instance several tests share lives until the file's last test is
// done, failed tests included; the test that runs this case checks it is gone afterwards.
import { expect } from "vitest"
import { isRunning, record, recorded } from "../record.ts"
import { test } from "./skyrepl.ts"

let shared = ""

test("launches an instance for the whole file", async ({ fileRepl }) => {
  shared = (await fileRepl.launch({ command: "exec sleep 600" })).instance.name
  record("shared", shared)
})

test("fails, and the file's instance lives on", async ({ fileRepl }) => {
  expect(await isRunning(shared)).toBe(true)
  expect((await fileRepl.exec("echo from the file's helper")).stdout).toBe("from the file's helper\n")
  expect("the test").toBe("failing on purpose")
})

test("a test's own instance still ends with that test", async ({ repl }) => {
  record("own", (await repl.launch({ command: "exec sleep 600" })).instance.name)
})

test("is still running in the last test", async ({ skyreplClient }) => {
  expect(await isRunning(shared)).toBe(true)
  const own = recorded().find((r) => r.label === "own")?.name ?? "none"
  expect(await isRunning(own)).toBe(false)
  expect((await skyreplClient.listInstances()).find((i) => i.name === shared)?.state).toBe("allocated")
})
