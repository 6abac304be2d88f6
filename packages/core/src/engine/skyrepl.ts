import { ConfigError, Context, Duration, Effect, Either, Layer, Schedule, Schema, Scope } from "effect"
import { boxedPrimitiveProblem } from "../boxed.ts"
import { describeCause } from "../cause-message.ts"
import { checkSettings, configErrorFrom, SkyReplConfig, type SkyReplSettings } from "../config.ts"
import { Controller } from "../domain/controller.ts"
import { ProviderError, UnknownProvider } from "../errors.ts"
import { type AgentHub, makeAgentHub } from "../hub/agent-hub.ts"
import { newId, randomHex } from "../naming.ts"
import { Provider, type ProviderService } from "../provider.ts"
import { Store, type StoreService } from "../store.ts"
import { handleControlCancel } from "./cancel.ts"
import { makeClient, type SkyReplClient } from "./client.ts"
import { reapExpired } from "./lifecycle.ts"
import { machineName } from "./machine.ts"
import * as RunChanges from "./run-changes.ts"
import type { LiveRun, SkyReplService } from "./service.ts"

/**
 * A provider built on first use rather than with the engine. A CLI offers every provider but a
 * command uses one or none; building (and importing) the others would be most of its start-up.
 * The layer's failure, when it is built, is the caller's `ProviderError` ("unavailable").
 */
export interface LazyProvider<E = never> {
  readonly id: string
  readonly layer: Layer.Layer<Provider, E>
}

const isLazy = <E>(entry: Layer.Layer<Provider, E> | LazyProvider<unknown>): entry is LazyProvider<unknown> => !Layer.isLayer(entry)
const isEager = <E>(entry: Layer.Layer<Provider, E> | LazyProvider<unknown>): entry is Layer.Layer<Provider, E> => Layer.isLayer(entry)

export interface SkyReplLayerOptions<EP, ES, EC> {
  /** Provider layers, built with the engine, and `LazyProvider`s, built when first used. */
  readonly providers: ReadonlyArray<Layer.Layer<Provider, EP> | LazyProvider<unknown>>
  readonly store: Layer.Layer<Store, ES>
  /** Settings: a layer (e.g. `SkyReplConfig.fromEnv()`), or plain overrides of the defaults. */
  readonly config?: Layer.Layer<SkyReplConfig, EC> | Partial<SkyReplSettings>
}

const ms = (d: Duration.Duration) => Duration.toMillis(d)

/**
 * Builds the engine: opens the store, builds each provider, keeps its leases alive, and reaps
 * instances whose owners died (at start-up, before anything else runs, and then periodically).
 *
 * The agent endpoint and this controller's record are made on first need (`register`): a
 * launch, or a claim on someone else's instance. A command that only reads (`repl run list`)
 * then starts no HTTP server and writes nothing, which is most of what it would otherwise cost.
 */
export const make = (
  providerList: ReadonlyArray<ProviderService>,
  store: StoreService,
  settings: SkyReplSettings,
  lazyProviders: ReadonlyArray<LazyProvider<unknown>> = []
): Effect.Effect<SkyReplService, never, Scope.Scope> =>  Effect.gen(function* () {
    const scope = yield* Effect.scope
    const built = new Map(providerList.map((p) => [p.id, p] as const))
    const pending = new Map(lazyProviders.filter((l) => !built.has(l.id)).map((l) => [l.id, l] as const))
    const providerIds = [...built.keys(), ...pending.keys()]
    const building = yield* Effect.makeSemaphore(1)
    // A provider lives as long as the engine, whoever asked for it first.
    const buildLazy = (entry: LazyProvider<unknown>) =>
      Layer.buildWithScope(entry.layer, scope).pipe(
        Effect.map(Context.get(Provider)),
        // Records name the provider by the built service's id, and termination looks it up by
        // that id: an entry whose layer builds another id would launch instances that this
        // engine then cannot terminate (left "terminating" for a process that has the id).
        Effect.filterOrFail(
          (built) => built.id === entry.id,
          (built) =>
            new ProviderError({
              provider: entry.id,
              operation: "load",
              reason: "unavailable",
              message: `provider "${entry.id}" could not be set up: its layer builds provider "${built.id}"; give it as { id: "${built.id}", layer }`
            })
        ),
        Effect.mapError((cause) =>
          cause instanceof ProviderError
            ? cause
            : new ProviderError({
                provider: entry.id,
                operation: "load",
                reason: "unavailable",
                message: `provider "${entry.id}" could not be set up: ${describeCause(cause)}`,
                cause
              })
        ),
        Effect.tap((provider) => Effect.sync(() => built.set(entry.id, provider)))
      )
    const provider = (id: string): Effect.Effect<ProviderService, UnknownProvider | ProviderError> =>
      Effect.suspend((): Effect.Effect<ProviderService, UnknownProvider | ProviderError> => {
        const ready = built.get(id)
        if (ready !== undefined) return Effect.succeed(ready)
        const entry = pending.get(id)
        if (entry === undefined) return Effect.fail(new UnknownProvider({ provider: id, known: providerIds }))
        // Only a success is kept: a failed build is tried again by the next caller.
        return building.withPermits(1)(
          Effect.suspend(() => {
            const raced = built.get(id)
            return raced !== undefined ? Effect.succeed(raced) : buildLazy(entry)
          })
        )
      })
    const identity = { id: newId(Date.now()), pid: process.pid, hostname: machineName() }
    const changes = RunChanges.make()
    const live = new Map<string, LiveRun>()
    // The control handler needs the engine, which needs the hub: tie the knot through a ref.
    const self: { engine: SkyReplService | null } = { engine: null }

    const secret = randomHex(24)
    /** Started, and kept even if recording it failed: the next `register` records it again. */
    let endpoint: AgentHub | null = null
    /** Started and recorded. */
    let hub: AgentHub | null = null
    const registering = yield* Effect.makeSemaphore(1)
    // The hub and the record live as long as the engine, not as the first caller's scope.
    const startAndRecord = Effect.gen(function* () {
      const started = endpoint ?? (yield* makeAgentHub({
        host: settings.hubHost,
        port: settings.hubPort,
        publicUrl: settings.controlPlaneUrl,
        heartbeatIntervalMs: ms(settings.heartbeatInterval),
        deadmanTimeoutMs: ms(settings.deadmanTimeout),
        controlSecret: secret,
        onControlCancel: (runId) =>
          self.engine === null ? Effect.succeed("unavailable") : handleControlCancel(self.engine, runId)
      }).pipe(Scope.extend(scope)))
      endpoint = started
      const now = Date.now()
      yield* store.upsertController(
        new Controller({ ...identity, hubUrl: started.url, secret, startedAt: now, leaseExpiresAt: now + ms(settings.leaseTtl) })
      )
      yield* Scope.addFinalizer(scope, store.removeController(identity.id).pipe(Effect.ignore))
      hub = started
      return started
    })
    // Only a success is kept: a failed start (a port in use) is tried again by the next caller.
    const register = registering.withPermits(1)(Effect.suspend(() => (hub !== null ? Effect.succeed(hub) : startAndRecord)))

    const engine: SkyReplService = {
      settings,
      store,
      controller: identity,
      providerIds,
      register,
      registered: () => hub !== null,
      live,
      changes,
      provider,
      builtProvider: (id) => built.get(id)
    }
    self.engine = engine

    // Renew well before expiry so one slow tick (a busy disk, a GC pause) does not lose the lease.
    const renewEvery = Duration.millis(Math.max(50, ms(settings.leaseTtl) / 3))
    // Suspended so that every renewal computes its own expiry: an expiry computed once would be
    // written again and again, and after one TTL every lease of this controller would look
    // expired to any other controller, which would then reap runs still going here.
    yield* Effect.suspend(() =>
      hub === null ? Effect.void : store.renewLeases(identity.id, Date.now() + ms(settings.leaseTtl))
    ).pipe(
      Effect.ignore,
      Effect.repeat(Schedule.spaced(renewEvery)),
      Effect.delay(renewEvery),
      Effect.forkScoped
    )

    yield* reapExpired(engine)
    yield* reapExpired(engine).pipe(
      Effect.repeat(Schedule.spaced(settings.leaseTtl)),
      Effect.delay(settings.leaseTtl),
      Effect.forkScoped
    )
    return engine
  })

/** A value as an error message names it: short, whatever it is (a layer prints as its whole tree). */
const shown = (value: unknown): string =>
  value === null || typeof value !== "object" ? String(value) : Layer.isLayer(value) ? "a layer" : Array.isArray(value) ? "a list" : "an object"

const AnyLayer = Schema.declare((input: unknown): input is Layer.Layer<unknown, unknown, unknown> => Layer.isLayer(input))

/**
 * The options' shape. A caller in plain JavaScript, or behind a cast, can give anything, and a
 * missing `providers`, a null entry in it or a missing `store` each threw a TypeError from here.
 */
const LayerOptionsShape = Schema.Struct({
  providers: Schema.Array(
    // `override`: a union's own message, rather than its first member's.
    Schema.Union(AnyLayer, Schema.Struct({ id: Schema.NonEmptyString, layer: AnyLayer })).annotations({
      message: (issue) => ({ message: `must be a provider layer or a { id, layer } entry with a non-empty id, not ${shown(issue.actual)}`, override: true })
    })
  ).annotations({ message: (issue) => `must be a list of provider layers or { id, layer } entries, not ${shown(issue.actual)}` }),
  store: AnyLayer.annotations({ message: (issue) => `must be a store layer (e.g. SqliteStore.layer()), not ${shown(issue.actual)}` }),
  config: Schema.optional(
    Schema.Union(AnyLayer, Schema.Object).annotations({
      message: (issue) => ({ message: `must be a settings layer or an object of settings, not ${shown(issue.actual)}`, override: true })
    })
  )
}).annotations({ message: (issue) => `SkyRepl.layer takes { providers, store, config? }, not ${shown(issue.actual)}` })

const layerFrom = <EP, ES, EC>(options: SkyReplLayerOptions<EP, ES, EC>): Layer.Layer<SkyRepl, EP | ES | EC | ConfigError.ConfigError> => {
  // `config: { home: new String("/srv") }` was "home: Expected string, actual /srv".
  const boxed = boxedPrimitiveProblem(options, "SkyRepl.layer options")
  if (boxed !== null) return Layer.fail(ConfigError.InvalidData([], boxed))
  const shape = Schema.decodeUnknownEither(LayerOptionsShape)(options)
  if (Either.isLeft(shape)) return Layer.fail(configErrorFrom(shape.left))
  const config = options.config
  const isLayer = (c: typeof config): c is Layer.Layer<SkyReplConfig, EC> => Layer.isLayer(c)
  const configLayer: Layer.Layer<SkyReplConfig, EC> =
    config === undefined ? SkyReplConfig.layer() : isLayer(config) ? config : SkyReplConfig.layer(config)
  // However the settings were given (variables, overrides in code, a layer of the caller's
  // own), they are checked before the store is opened.
  const checked = Layer.effect(
    SkyReplConfig,
    Effect.flatMap(SkyReplConfig, (settings) => Effect.as(checkSettings(settings), settings))
  ).pipe(Layer.provide(configLayer))
  return Layer.scoped(
    SkyRepl,
    Effect.gen(function* () {
      const settings = yield* SkyReplConfig
      const store = yield* Store
      const scope = yield* Effect.scope
      // Each provider layer is built on its own, so two providers never see each other's tag.
      const providerList = yield* Effect.forEach(options.providers.filter(isEager), (layer) =>
        Layer.buildWithScope(layer, scope).pipe(Effect.map(Context.get(Provider)))
      )
      // One id, one provider: with two, one would be dropped silently (an AWS layer for another
      // account or region, say), and launches would go where the caller did not mean.
      const ids = [...providerList.map((p) => p.id), ...options.providers.filter(isLazy).map((l) => l.id)]
      const twice = ids.find((id, i) => ids.indexOf(id) !== i)
      if (twice !== undefined) {
        return yield* Effect.fail(ConfigError.InvalidData(["providers"], `provider "${twice}" is given more than once; each id names one provider`))
      }
      return yield* make(providerList, store, settings, options.providers.filter(isLazy))
    })
  ).pipe(Layer.provide(options.store), Layer.provide(checked))
}

/**
 * The engine service, and the two ways to build it: `SkyRepl.layer` for Effect programs and
 * `SkyRepl.make` for the Promise client.
 */
export class SkyRepl extends Context.Tag("@skyrepl/core/SkyRepl")<SkyRepl, SkyReplService>() {
  static readonly layer = layerFrom
  static readonly make = <EP, ES, EC>(options: SkyReplLayerOptions<EP, ES, EC>): Promise<SkyReplClient> =>
    makeClient(layerFrom(options))
}

export type { LiveRun, SkyReplService }
