// SkyREPL in a Bun REPL, cell by cell. Start `bun repl` in this folder, then for each cell type
// `.editor`, paste the cell and press Ctrl-D: the cell runs as one unit, so an `await using` in it
// ends its instance when the cell is done.

// %% Open the engine once per session: the local provider, the SQLite store, SKYREPL_* settings.
import { SkyRepl, SkyReplConfig } from "@skyrepl/core"
import { LocalProvider } from "@skyrepl/provider-local"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { tmpdir } from "node:os"
import { join } from "node:path"

const home = process.env["SKYREPL_HOME"] ?? join(tmpdir(), "skyrepl-example-notebook")
const sky = await SkyRepl.make({
  providers: [LocalProvider.layer({ home })],
  store: SqliteStore.layerFromHome(home),
  config: SkyReplConfig.fromEnv({ home })
})

// %% A run for this cell only: `await using` ends its instance when the cell is done.
await using hello = await sky.launch({ command: "echo hello from $(hostname)" })
for await (const chunk of hello.output) process.stdout.write(chunk.data)
console.log("hello:", hello.instance.name, (await hello.result()).state)

// %% A run that outlives its cell: keep the handle…
const ticker = await sky.launch({ command: "while true; do echo tick; sleep 0.2; done" })
console.log("ticker:", ticker.instance.name)

// %% …read it from any later cell (each loop over `output` starts at the first byte)…
for await (const chunk of ticker.output) {
  process.stdout.write(chunk.data)
  break
}

// %% …and end it when you are done with it.
await ticker.dispose()
console.log("ticker ended:", (await sky.getRun(ticker.id)).state)

// %% Whatever is still running when you leave the REPL (`.exit`, Ctrl-D) is ended on the way out.
const forgotten = await sky.launch({ command: "exec sleep 600" })
console.log("left running:", forgotten.instance.name)
