// Vitest fixtures: each test gets instances that are terminated when the test ends — passed,
// failed or timed out — without a line of cleanup in the test.
import { describe, expect } from "vitest"
import { test } from "./skyrepl.ts"

const text = (data: Uint8Array) => Buffer.from(data).toString("utf8")

test("exec runs a command on a fresh instance and returns its output and exit", async ({ repl }) => {
  const result = await repl.exec("echo hello; echo oops >&2; exit 3")
  expect(result).toMatchObject({ state: "failed", exitCode: 3, stdout: "hello\n", stderr: "oops\n" })
})

test("launch options: env, and a maxDuration that stops the run", async ({ repl }) => {
  expect((await repl.exec('echo "$GREETING"', { env: { GREETING: "hi there" } })).stdout).toBe("hi there\n")
  expect((await repl.exec("exec sleep 600", { maxDuration: "1 second" })).state).toBe("timed_out")
})

describe("the run fixture", () => {
  // Per suite: the command the `run` fixture starts, and its environment.
  test.scoped({ skyreplOptions: { command: 'echo "ready on $(hostname)"; exec sleep 600', env: { MODE: "fixture" } } })

  let held = ""
  test("is launched before the test starts", async ({ run }) => {
    held = run.instance.name
    for await (const chunk of run.output) {
      expect(text(chunk.data)).toBe(`ready on ${run.instance.name}\n`)
      break
    }
    // No cleanup here: the fixture ends the run and its instance when this test ends.
  })

  test("and its instance is terminated once that test has ended", async ({ skyreplClient }) => {
    const instances = await skyreplClient.listInstances()
    expect(instances.find((i) => i.name === held)?.state).toBe("terminated")
  })
})
