// The engine the tests and the global teardown share: the local provider, the SQLite store and
// settings from the environment, in a state home of the example's own.
import { SkyReplConfig } from "@skyrepl/core"
import { LocalProvider } from "@skyrepl/provider-local"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { tmpdir } from "node:os"
import { join } from "node:path"

// SKYREPL_HOME overrides it. The same path in every worker and in the global teardown, which
// must open the store the workers used to find what they left.
const home = process.env["SKYREPL_HOME"] ?? join(tmpdir(), "skyrepl-example-jest")

export const engine = () => ({
  providers: [LocalProvider.layer({ home })],
  store: SqliteStore.layerFromHome(home),
  config: SkyReplConfig.fromEnv({ home })
})
