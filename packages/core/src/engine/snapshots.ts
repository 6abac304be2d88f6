import { Effect, Option } from "effect"
import type { Instance } from "../domain/instance.ts"
import {
  InstanceNotFound,
  InvalidSnapshotId,
  InvalidSnapshotName,
  type ProviderError,
  type ProviderMisconfigured,
  type StoreError,
  Unsupported,
  type UnknownProvider
} from "../errors.ts"
import { checkProviderConfiguration, type ProviderService, type ProviderSnapshots, type Snapshot } from "../provider.ts"
import { refOf, withProviderRetry } from "./lifecycle.ts"
import type { SkyReplService } from "./service.ts"

export type SnapshotError =
  | InstanceNotFound
  | InvalidSnapshotId
  | InvalidSnapshotName
  | Unsupported
  | UnknownProvider
  | ProviderMisconfigured
  | ProviderError
  | StoreError

const snapshotsOf = (provider: ProviderService): Effect.Effect<ProviderSnapshots, Unsupported | ProviderMisconfigured> =>
  provider.capabilities.snapshots && provider.snapshots !== undefined
    ? Effect.as(checkProviderConfiguration(provider), provider.snapshots)
    : Effect.fail(new Unsupported({ provider: provider.id, feature: "snapshots" }))

/**
 * Fails with `InvalidSnapshotId` for an id the provider says could never be one of its
 * snapshots. The CLI calls it too, to refuse such an id before the store is opened.
 */
export const checkSnapshotId = (provider: ProviderService, id: string): Effect.Effect<void, InvalidSnapshotId> => {
  const problem = provider.snapshots?.idProblem?.(id) ?? null
  return problem === null ? Effect.void : Effect.fail(new InvalidSnapshotId({ provider: provider.id, id, problem }))
}

/** A live instance, named directly or through a run on it. */
const findInstance = (engine: SkyReplService, target: string): Effect.Effect<Instance, InstanceNotFound | StoreError> =>
  Effect.gen(function* () {
    const byName = yield* engine.store.getInstanceByName(target)
    if (Option.isSome(byName)) return byName.value
    const run = yield* engine.store.getRun(target)
    if (Option.isSome(run)) {
      const instance = yield* engine.store.getInstance(run.value.instanceId)
      if (Option.isSome(instance)) return instance.value
    }
    return yield* new InstanceNotFound({ target })
  })

/** Snapshots the instance named `target` (an instance name, or a run id). */
export const createSnapshotWith = (
  engine: SkyReplService,
  target: string,
  name?: string
): Effect.Effect<Snapshot, SnapshotError> =>
  Effect.gen(function* () {
    const instance = yield* findInstance(engine, target)
    if (instance.state === "terminated" || instance.state === "terminating") {
      return yield* new InstanceNotFound({ target, detail: `instance ${instance.name} is ${instance.state}; only a live instance can be snapshotted` })
    }
    const provider = yield* engine.provider(instance.provider)
    const snapshots = yield* snapshotsOf(provider)
    if (name !== undefined) {
      const problem = snapshots.nameProblem?.(name) ?? null
      if (problem !== null) return yield* new InvalidSnapshotName({ provider: provider.id, name, problem })
    }
    return yield* snapshots.create(refOf(instance), name ?? `${instance.name}-${Date.now().toString(36)}`)
  })

/** Snapshots at the given providers, or at every provider that has them and can be reached. */
export const listSnapshotsWith = (
  engine: SkyReplService,
  providerIds?: ReadonlyArray<string>
): Effect.Effect<ReadonlyArray<Snapshot>, SnapshotError> =>
  Effect.gen(function* () {
    const providers = providerIds === undefined
      ? (yield* Effect.forEach(engine.providerIds, (id) => engine.provider(id))).filter((p) => p.capabilities.snapshots)
      : yield* Effect.forEach(providerIds, (id) => engine.provider(id))
    // Listing every provider's skips one that cannot be reached (no region, no orbctl) or whose
    // settings are malformed, with a warning; a provider the caller named fails loudly.
    const skip = (provider: ProviderService, message: string) =>
      Effect.as(Effect.logWarning(`skipped provider ${provider.id}: ${message}`), [] as ReadonlyArray<Snapshot>)
    const lists = yield* Effect.forEach(providers, (provider) =>
      snapshotsOf(provider).pipe(
        Effect.flatMap((s) => withProviderRetry(s.list())),
        Effect.catchIf(
          (error): error is ProviderError | ProviderMisconfigured =>
            providerIds === undefined &&
            (error._tag === "ProviderMisconfigured" || (error._tag === "ProviderError" && error.reason === "unavailable")),
          (error) => skip(provider, error.message)
        )
      )
    )
    return lists.flat()
  })

export const deleteSnapshotWith = (
  engine: SkyReplService,
  providerId: string,
  id: string,
  region: string | null
): Effect.Effect<void, SnapshotError> =>
  Effect.gen(function* () {
    const provider = yield* engine.provider(providerId)
    const snapshots = yield* snapshotsOf(provider)
    yield* checkSnapshotId(provider, id)
    yield* withProviderRetry(snapshots.delete(id, region))
  })
