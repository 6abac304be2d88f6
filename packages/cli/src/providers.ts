import type { Provider, ProviderError, SkyReplSettings } from "@skyrepl/core"
import { AwsProvider } from "@skyrepl/provider-aws"
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
  // Region, endpoint, scanned regions and the capacity back-off come from the environment
  // (AWS_REGION / AWS_DEFAULT_REGION, SKYREPL_AWS_ENDPOINT, SKYREPL_AWS_REGIONS,
  // SKYREPL_AWS_CAPACITY_BACKOFF; docs/configuration.md); the SDK loads on first use.
  { id: "aws", layer: (settings) => AwsProvider.layer({ home: settings.home }) },
  { id: "orbstack", layer: () => OrbStackProvider.layer() }
]
