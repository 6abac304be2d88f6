// bun test with the Promise client: one client per file, opened with top-level await; each test
// ends its instances with `await using`, and afterAll disposes the client (and with it anything
// a test left). `createTestRepl` adds `exec` and an `endAll` for afterEach.
import { afterAll, afterEach, expect, test } from "bun:test"
import { createTestRepl, SkyRepl, SkyReplConfig } from "@skyrepl/core"
import { LocalProvider } from "@skyrepl/provider-local"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { tmpdir } from "node:os"
import { join } from "node:path"

// SKYREPL_HOME overrides it. It stays put between runs, so a run that was killed has its
// instances ended by the next one.
const home = process.env["SKYREPL_HOME"] ?? join(tmpdir(), "skyrepl-example-bun-test")

const client = await SkyRepl.make({
  providers: [LocalProvider.layer({ home })],
  store: SqliteStore.layerFromHome(home),
  config: SkyReplConfig.fromEnv({ home })
})
const repl = createTestRepl(client, { maxDuration: "5 minutes" })
afterEach(() => repl.endAll())
afterAll(() => client.dispose())

const text = (data: Uint8Array) => Buffer.from(data).toString("utf8")

test("await using ends the instance when the block is left", async () => {
  let name = ""
  {
    await using run = await client.launch({ command: "echo ready; exec sleep 600" })
    name = run.instance.name
    for await (const chunk of run.output) {
      expect(text(chunk.data)).toBe("ready\n")
      break
    }
    expect((await client.getRun(run.id)).state).toBe("running")
  }
  const instances = await client.listInstances()
  expect(instances.find((i) => i.name === name)?.state).toBe("terminated")
})

test("exec runs a command to completion", async () => {
  const result = await repl.exec('echo "$GREETING"; exit 4', { env: { GREETING: "hi" } })
  expect(result).toMatchObject({ state: "failed", exitCode: 4, stdout: "hi\n" })
})

let held = ""
test("a launch left running is ended by afterEach…", async () => {
  held = (await repl.launch({ command: "exec sleep 600" })).instance.name
})

test("…before the next test starts", async () => {
  const instances = await client.listInstances()
  expect(instances.find((i) => i.name === held)?.state).toBe("terminated")
})
