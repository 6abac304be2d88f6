import {
  checkProviderConfiguration,
  type InvalidSpec,
  Provider,
  type ProviderMisconfigured,
  type ProviderError,
  type ProviderService,
  SkyRepl,
  SkyReplConfig,
  type SpecOptions,
  type SkyReplSettings,
  settingsFromEnv,
  type UnknownProvider,
  UnknownProvider as UnknownProviderError,
  Unsupported
} from "@skyrepl/core"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { ConfigError, Context, Effect, Layer, type Scope } from "effect"
import { join } from "node:path"
import { UsageFailure } from "./errors.ts"
import { providerEntries } from "./providers.ts"

const providerLayers = (settings: SkyReplSettings): ReadonlyMap<string, () => Layer.Layer<Provider, ProviderError>> =>
  new Map(providerEntries.map((entry) => [entry.id, () => entry.layer(settings)] as const))

export const knownProviders = (settings: SkyReplSettings): ReadonlyArray<string> => [...providerLayers(settings).keys()]

/** The SQLite file of a state home: the one place the CLI names it. */
const storeFile = (home: string): string => join(home, "state.db")

/**
 * The settings from the environment, with a home too long for SQLite refused as the variable to
 * fix, before anything is made there: opening the store failed with SQLITE_CANTOPEN, which
 * names neither the variable nor the limit.
 */
export const loadSettings: Effect.Effect<SkyReplSettings, ConfigError.ConfigError> = Effect.flatMap(settingsFromEnv, (settings) => {
  const bytes = SqliteStore.pathBytes(storeFile(settings.home))
  if (bytes <= SqliteStore.MAX_PATH_BYTES) return Effect.succeed(settings)
  const room = SqliteStore.MAX_PATH_BYTES - Buffer.byteLength("/state.db")
  return Effect.fail(
    ConfigError.InvalidData(
      ["SKYREPL_HOME"],
      `too long: its store, state.db, would have a path of ${bytes} bytes (symbolic links resolved), and SQLite opens no database whose path is over ${SqliteStore.MAX_PATH_BYTES}; keep SKYREPL_HOME within ${room} bytes`
    )
  )
})

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
 * The providers a snapshot command names, built and checked before the store is opened: one
 * without snapshots, with malformed settings, or given a region it cannot have is a usage error
 * that writes nothing (and reaps nothing).
 */
export const snapshotProviders = (
  settings: SkyReplSettings,
  ids: ReadonlyArray<string>,
  region: string | undefined
): Effect.Effect<ReadonlyArray<ProviderService>, UnknownProvider | ProviderError | Unsupported | ProviderMisconfigured | UsageFailure | InvalidSpec, Scope.Scope> =>
  Effect.forEach(ids, (id) =>
    Effect.gen(function* () {
      const provider = yield* buildProvider(settings, id)
      if (!provider.capabilities.snapshots) return yield* new Unsupported({ provider: id, feature: "snapshots" })
      yield* checkProviderConfiguration(provider)
      if (region !== undefined) {
        if (!provider.capabilities.regions) return yield* new UsageFailure({ message: `--region: provider "${id}" has no regions` })
        yield* checkSpec(provider, undefined, { region })
      }
      return provider
    })
  )

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
    store: SqliteStore.layer({ filename: storeFile(settings.home) }),
    config: Layer.succeed(SkyReplConfig, settings)
  })
}
