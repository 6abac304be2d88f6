// useSkyRepl: what a test launches is terminated after that test, passed, failed or timed out;
// what a beforeAll launches lives until the file is done.
import { beforeAll, describe, expect, test } from "@jest/globals"
import { useSkyRepl } from "@skyrepl/core/jest"
import { engine } from "./skyrepl.ts"

const repl = useSkyRepl(engine, { maxDuration: "5 minutes" })

const text = (data: Uint8Array) => Buffer.from(data).toString("utf8")

test("exec runs a command on a fresh instance and returns its output and exit", async () => {
  const result = await repl.exec("echo hello; echo oops >&2; exit 3")
  expect(result).toMatchObject({ state: "failed", exitCode: 3, stdout: "hello\n", stderr: "oops\n" })
})

describe("a launched run", () => {
  let held = ""
  test("streams its output while it runs", async () => {
    const run = await repl.launch({ command: 'echo "$GREETING"; exec sleep 600', env: { GREETING: "hi" } })
    held = run.instance.name
    for await (const chunk of run.output) {
      expect(text(chunk.data)).toBe("hi\n")
      break
    }
    // No cleanup here: the helper's afterEach ends the run and its instance.
  })

  test("and its instance is terminated once that test has ended", async () => {
    const instances = await repl.client.listInstances()
    expect(instances.find((i) => i.name === held)?.state).toBe("terminated")
  })
})

describe("a run launched in beforeAll", () => {
  let shared = ""
  beforeAll(async () => {
    shared = (await repl.launch({ command: "exec sleep 600" })).id
  })

  test("is still running in the first test…", async () => {
    expect((await repl.client.getRun(shared)).state).toBe("running")
  })

  test("…and in the next: it lives until the file is done", async () => {
    expect((await repl.client.getRun(shared)).state).toBe("running")
  })
})
