import { Context, Duration, Effect, Layer, PubSub, Schedule, type Scope } from "effect"
import { randomBytes } from "node:crypto"
import { hostname } from "node:os"
import { SkyReplConfig, type SkyReplSettings } from "../config.ts"
import { Controller } from "../domain/controller.ts"
import { type HubError, UnknownProvider } from "../errors.ts"
import { makeAgentHub } from "../hub/agent-hub.ts"
import { newId } from "../naming.ts"
import { Provider, type ProviderService } from "../provider.ts"
import { Store, type StoreService } from "../store.ts"
import { handleControlCancel } from "./cancel.ts"
import { makeClient, type SkyReplClient } from "./client.ts"
import { reapExpired } from "./lifecycle.ts"
import type { LiveRun, SkyReplService } from "./service.ts"

export interface SkyReplLayerOptions<EP, ES, EC> {
  readonly providers: ReadonlyArray<Layer.Layer<Provider, EP>>
  readonly store: Layer.Layer<Store, ES>
  /** Settings: a layer (e.g. `SkyReplConfig.fromEnv()`), or plain overrides of the defaults. */
  readonly config?: Layer.Layer<SkyReplConfig, EC> | Partial<SkyReplSettings>
}

const ms = (d: Duration.Duration) => Duration.toMillis(d)

/**
 * Builds the engine: opens the store, builds each provider, starts the agent endpoint,
 * registers this process as a controller, keeps its leases alive, and reaps instances whose
 * owners died (at start-up, before anything else runs, and then periodically).
 */
export const make = (
  providerList: ReadonlyArray<ProviderService>,
  store: StoreService,
  settings: SkyReplSettings
): Effect.Effect<SkyReplService, HubError, Scope.Scope> =>  Effect.gen(function* () {
    const providers = new Map(providerList.map((p) => [p.id, p] as const))
    const now = Date.now()
    const secret = randomBytes(24).toString("hex")
    const changes = yield* PubSub.unbounded<string>()
    const live = new Map<string, LiveRun>()
    // The control handler needs the engine, which needs the hub: tie the knot through a ref.
    const self: { engine: SkyReplService | null } = { engine: null }
    const hub = yield* makeAgentHub({
      host: settings.hubHost,
      port: settings.hubPort,
      publicUrl: settings.controlPlaneUrl,
      heartbeatIntervalMs: ms(settings.heartbeatInterval),
      deadmanTimeoutMs: ms(settings.deadmanTimeout),
      controlSecret: secret,
      onControlCancel: (runId) =>
        self.engine === null ? Effect.succeed("unavailable") : handleControlCancel(self.engine, runId)
    })
    const controller = new Controller({
      id: newId(now),
      pid: process.pid,
      hostname: hostname(),
      hubUrl: hub.url,
      secret,
      startedAt: now,
      leaseExpiresAt: now + ms(settings.leaseTtl)
    })
    const engine: SkyReplService = {
      settings,
      store,
      controller,
      providers,
      hub,
      live,
      changes,
      provider: (id) => {
        const found = providers.get(id)
        return found === undefined
          ? Effect.fail(new UnknownProvider({ provider: id, known: [...providers.keys()] }))
          : Effect.succeed(found)
      }
    }
    self.engine = engine

    yield* store.upsertController(controller).pipe(Effect.orDie)
    yield* Effect.addFinalizer(() => store.removeController(controller.id).pipe(Effect.ignore))

    // Renew well before expiry so one slow tick (a busy disk, a GC pause) does not lose the lease.
    const renewEvery = Duration.millis(Math.max(50, ms(settings.leaseTtl) / 3))
    // Suspended so that every renewal computes its own expiry: an expiry computed once would be
    // written again and again, and after one TTL every lease of this controller would look
    // expired to any other controller, which would then reap runs still going here.
    yield* Effect.suspend(() => store.renewLeases(controller.id, Date.now() + ms(settings.leaseTtl))).pipe(
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

const layerFrom = <EP, ES, EC>(options: SkyReplLayerOptions<EP, ES, EC>): Layer.Layer<SkyRepl, EP | ES | EC | HubError> => {
  const config = options.config
  const isLayer = (c: typeof config): c is Layer.Layer<SkyReplConfig, EC> => Layer.isLayer(c)
  const configLayer: Layer.Layer<SkyReplConfig, EC> =
    config === undefined ? SkyReplConfig.layer() : isLayer(config) ? config : SkyReplConfig.layer(config)
  return Layer.scoped(
    SkyRepl,
    Effect.gen(function* () {
      const settings = yield* SkyReplConfig
      const store = yield* Store
      const scope = yield* Effect.scope
      // Each provider layer is built on its own, so two providers never see each other's tag.
      const providerList = yield* Effect.forEach(options.providers, (layer) =>
        Layer.buildWithScope(layer, scope).pipe(Effect.map(Context.get(Provider)))
      )
      return yield* make(providerList, store, settings)
    })
  ).pipe(Layer.provide(Layer.merge(options.store, configLayer)))
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
