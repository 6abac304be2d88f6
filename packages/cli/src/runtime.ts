import {
  type InvalidSpec,
  Provider,
  type ProviderError,
  type ProviderService,
  SkyRepl,
  SkyReplConfig,
  type SpecOptions,
  type SkyReplSettings,
  settingsFromEnv,
  type UnknownProvider,
  UnknownProvider as UnknownProviderError
} from "@skyrepl/core"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { Context, Effect, Layer, type Scope } from "effect"
import { join } from "node:path"
import { providerEntries } from "./providers.ts"

const providerLayers = (settings: SkyReplSettings): ReadonlyMap<string, () => Layer.Layer<Provider, ProviderError>> =>
  new Map(providerEntries.map((entry) => [entry.id, () => entry.layer(settings)] as const))

export const knownProviders = (settings: SkyReplSettings): ReadonlyArray<string> => [...providerLayers(settings).keys()]

export const loadSettings = settingsFromEnv

/** Fails on the first id in `ids` that names no provider this CLI has. */
export const checkProviderIds = (settings: SkyReplSettings, ids: ReadonlyArray<string>): Effect.Effect<void, UnknownProvider> => {
  const known = knownProviders(settings)
  const unknown = ids.find((id) => !known.includes(id))
  return unknown === undefined ? Effect.void : Effect.fail(new UnknownProviderError({ provider: unknown, known }))
}

/**
 * Builds one provider on its own, before the store is opened: a bad provider or spec is then
 * refused with nothing written anywhere.
 */
export const buildProvider = (
  settings: SkyReplSettings,
  id: string
): Effect.Effect<ProviderService, UnknownProvider | ProviderError, Scope.Scope> =>
  Effect.gen(function* () {
    const make = providerLayers(settings).get(id)
    if (make === undefined) return yield* new UnknownProviderError({ provider: id, known: knownProviders(settings) })
    return Context.get(yield* Layer.build(make()), Provider)
  })

export const checkSpec = (provider: ProviderService, spec: string | undefined, options: SpecOptions = {}): Effect.Effect<void, InvalidSpec> =>
  Effect.asVoid(provider.parseSpec(spec, options))

/**
 * The engine for a CLI call: every known provider, built when first used (or the ones the
 * command already built), the SQLite store, env settings.
 */
export const engineLayer = (settings: SkyReplSettings, prebuilt: ReadonlyArray<ProviderService> = []) => {
  const providers = [...providerLayers(settings).entries()].map(([id, make]) => {
    const ready = prebuilt.find((p) => p.id === id)
    return ready === undefined ? { id, layer: make() } : Layer.succeed(Provider, ready)
  })
  return SkyRepl.layer({
    providers,
    store: SqliteStore.layer({ filename: join(settings.home, "state.db") }),
    config: Layer.succeed(SkyReplConfig, settings)
  })
}
