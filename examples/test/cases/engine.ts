// The engine of the cases: the local provider and the store in the state home the test chose,
// with its SKYREPL_* settings (a short lease TTL in the crash tests).
import { SkyReplConfig } from "@skyrepl/core"
import { LocalProvider } from "@skyrepl/provider-local"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { home } from "./record.ts"

export const engine = () => ({
  providers: [LocalProvider.layer({ home: home() })],
  store: SqliteStore.layerFromHome(home()),
  config: SkyReplConfig.fromEnv({ home: home() })
})
