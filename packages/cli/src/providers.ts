import type { Provider, ProviderError, SkyReplSettings } from "@skyrepl/core"
import { Effect, Layer } from "effect"

/**
 * The providers this CLI offers. A command uses one provider or none, so each is imported and
 * built only when the engine first asks for it (the engine takes them as `LazyProvider`s): the
 * other providers' modules never load. A provider's layer must still not fail for lack of
 * credentials or tools (see `ProviderService`), and heavy SDKs load on first use.
 */
export interface ProviderEntry {
  readonly id: string
  readonly layer: (settings: SkyReplSettings) => Layer.Layer<Provider, ProviderError>
}

/** A layer whose module is imported when the layer is built. */
const imported = <M>(load: () => Promise<M>, layer: (module: M) => Layer.Layer<Provider, ProviderError>) =>
  Layer.unwrapEffect(Effect.map(Effect.promise(load), layer))

export const providerEntries: ReadonlyArray<ProviderEntry> = [
  {
    id: "local",
    layer: (settings) => imported(() => import("@skyrepl/provider-local"), (m) => m.LocalProvider.layer({ home: settings.home }))
  },
  // Region, endpoint, scanned regions and the capacity back-off come from the environment
  // (AWS_REGION / AWS_DEFAULT_REGION, SKYREPL_AWS_ENDPOINT, SKYREPL_AWS_REGIONS,
  // SKYREPL_AWS_CAPACITY_BACKOFF; docs/configuration.md); the SDK loads on first use.
  {
    id: "aws",
    layer: (settings) => imported(() => import("@skyrepl/provider-aws"), (m) => m.AwsProvider.layer({ home: settings.home }))
  },
  { id: "orbstack", layer: () => imported(() => import("@skyrepl/provider-orbstack"), (m) => m.OrbStackProvider.layer()) }
]
