// A file that leaks: it launches through a Promise client of its own and never disposes it. The
// global teardown must end that instance anyway, whether Jest ran this file in a worker (which
// Jest then force-kills) or in its own process.
import { test } from "@jest/globals"
import { SkyRepl } from "@skyrepl/core"
import { engine } from "../engine.ts"
import { record } from "../record.ts"

test("launches and forgets", async () => {
  const client = await SkyRepl.make(engine())
  record("leaked", (await client.launch({ command: "exec sleep 600" })).instance.name)
})
