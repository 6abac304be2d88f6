// SkyREPL with Promises, for code that does not use Effect: `await using` ends an instance when
// its block is left, however it is left; `client.dispose()` ends everything the client started.
import { liveInstanceStates, SkyRepl, SkyReplConfig } from "@skyrepl/core"
import { LocalProvider } from "@skyrepl/provider-local"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { tmpdir } from "node:os"
import { join } from "node:path"

// A state home of its own, so the example never touches ~/.repl; SKYREPL_HOME overrides it. It
// stays put between runs: a run that was killed leaves its instances to the next one to end.
const home = process.env["SKYREPL_HOME"] ?? join(tmpdir(), "skyrepl-example-promise")

const text = (data: Uint8Array) => Buffer.from(data).toString("utf8")

// Rejections carry the same tagged errors as the Effect API: `error._tag` says what went wrong.
await using client = await SkyRepl.make({
  providers: [LocalProvider.layer({ home })],
  store: SqliteStore.layerFromHome(home),
  config: SkyReplConfig.fromEnv({ home })
})

// 1. launch: iterate the output as it is written. Leaving the block terminates the instance
//    (here the run has ended already, which ends its instance too).
let firstRun = ""
{
  await using run = await client.launch({ command: "for i in 1 2 3; do echo line $i; sleep 0.1; done", maxDuration: "1 minute" })
  console.log(`launched ${run.id} on ${run.instance.name}`)
  for await (const chunk of run.output) console.log(`${chunk.stream}@${chunk.offset} ${JSON.stringify(text(chunk.data))}`)
  const result = await run.result()
  console.log(`result: ${result.state}, exit ${result.exitCode}`)
  firstRun = run.id
}

// 2. attach: replay a run's output from any byte offset, with no gap and no duplicate. Here
//    from byte 7 of stdout ("line 1\n" is 7 bytes), without following (the run is over).
let rest = ""
for await (const chunk of client.attach(firstRun, { from: { stdout: 7 }, follow: false })) rest += text(chunk.data)
console.log(`attach from byte 7: ${JSON.stringify(rest)}`)

// 3. cancel: a command that would run for ten minutes, cancelled once it has started. `cancel`
//    works from any process (client.cancel(runId)) and is idempotent.
{
  await using run = await client.launch({ command: "echo waiting; exec sleep 600" })
  for await (const _ of run.output) break
  const cancelled = await run.cancel()
  const again = await client.cancel(run.id)
  const result = await run.result()
  console.log(`cancel: ${cancelled.outcome}, then ${again.outcome}; the run ended ${result.state}`)
}

// Nothing is left running: every instance this script launched is terminated.
const live = await client.listInstances({ states: liveInstanceStates })
console.log(`live instances: ${live.length}`)
