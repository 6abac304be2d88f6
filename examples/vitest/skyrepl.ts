// The engine both test files use: the local provider, the SQLite store, and settings from the
// environment (SKYREPL_LEASE_TTL and friends), in a state home of the example's own.
import { SkyRepl, SkyReplConfig } from "@skyrepl/core"
import { createSkyReplTest } from "@skyrepl/core/vitest"
import { LocalProvider } from "@skyrepl/provider-local"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { tmpdir } from "node:os"
import { join } from "node:path"

// SKYREPL_HOME overrides it. It stays put between runs: instances of a run that was killed are
// ended by the next run (their lease has lapsed), as by any other SkyREPL process.
const home = process.env["SKYREPL_HOME"] ?? join(tmpdir(), "skyrepl-example-vitest")

const engine = () => ({
  providers: [LocalProvider.layer({ home })],
  store: SqliteStore.layerFromHome(home),
  config: SkyReplConfig.fromEnv({ home })
})

/** Vitest's `test` with the `repl`, `run` and `skyreplClient` fixtures. */
export const test = createSkyReplTest(engine, { maxDuration: "5 minutes" })

/** The same engine as a layer, for @effect/vitest. */
export const SkyReplLive = SkyRepl.layer(engine())
