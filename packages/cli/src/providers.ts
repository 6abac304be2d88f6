import type { Provider, ProviderError, SkyReplSettings } from "@skyrepl/core"
import { LocalProvider } from "@skyrepl/provider-local"
import { OrbStackProvider } from "@skyrepl/provider-orbstack"
import type { Layer } from "effect"

/**
 * The providers this CLI offers. Every entry is built for every command, so a provider's layer
 * must be cheap and must not fail for lack of credentials or tools (see `ProviderService`):
 * heavy SDKs load on first use.
 */
export interface ProviderEntry {
  readonly id: string
  readonly layer: (settings: SkyReplSettings) => Layer.Layer<Provider, ProviderError>
}

export const providerEntries: ReadonlyArray<ProviderEntry> = [
  { id: "local", layer: (settings) => LocalProvider.layer({ home: settings.home }) },
  { id: "orbstack", layer: () => OrbStackProvider.layer() }
]
