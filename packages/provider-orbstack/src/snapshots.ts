import type { InstanceRef, ProviderError, ProviderSnapshots, Snapshot } from "@skyrepl/core"
import { Effect, Option } from "effect"
import { providerError, vmNotFound } from "./failures.ts"
import type { Orbctl } from "./orbstack-api.ts"
import { isSnapshotMachine, PROVIDER_ID, SNAPSHOT_PREFIX, snapshotMachine, snapshotNamePattern as namePattern } from "./spec.ts"

export { SNAPSHOT_PREFIX } from "./spec.ts"

const snapshotOf = (machine: string, source: string | null, createdAt: number | null): Snapshot => ({
  id: machine,
  name: machine.slice(SNAPSHOT_PREFIX.length),
  provider: PROVIDER_ID,
  region: null,
  source,
  // A clone is complete when `orbctl clone` returns; there is no pending phase to report.
  state: "available",
  createdAt
})

const nameProblem = (name: string): string | null =>
  namePattern.test(name)
    ? null
    : `snapshot name "${name}" must be lower-case letters, digits and hyphens, at most 54 characters (it becomes the machine name ${SNAPSHOT_PREFIX}NAME)`

const idProblem = (id: string): string | null =>
  isSnapshotMachine(id) ? null : `"${id}" is not a SkyREPL snapshot (their ids start with ${SNAPSHOT_PREFIX}); other machines are left alone`

export const makeSnapshots = (
  connect: Effect.Effect<Orbctl, ProviderError>,
  requireInstanceName: (operation: string, name: string) => Effect.Effect<void, ProviderError>
): ProviderSnapshots => ({
  nameProblem,
  idProblem,
  create: (ref: InstanceRef, name: string) =>
    Effect.gen(function* () {
      yield* requireInstanceName("snapshot", ref.name)
      const orbctl = yield* connect
      // Asked again for a caller that goes to the provider directly, not through the engine.
      const problem = nameProblem(name)
      if (problem !== null) return yield* providerError("snapshot", "invalid-request", problem)
      const machine = snapshotMachine(name)
      if (Option.isNone(yield* orbctl.info(ref.name))) return yield* vmNotFound("snapshot", ref.name)
      if (Option.isSome(yield* orbctl.info(machine))) {
        return yield* providerError("snapshot", "invalid-request", `a snapshot named ${name} already exists (machine ${machine})`)
      }
      yield* orbctl.clone(ref.name, machine)
      // A clone is a machine of its own: stopped, it costs disk only, and nothing in it runs.
      if (!(yield* orbctl.stop(machine))) return yield* vmNotFound("snapshot", machine)
      return snapshotOf(machine, ref.name, Date.now())
    }),
  list: () =>
    Effect.gen(function* () {
      const orbctl = yield* connect
      const machines = yield* orbctl.list
      return machines
        .filter((m) => isSnapshotMachine(m.name))
        .map((m) => snapshotOf(m.name, null, null))
        .sort((a, b) => a.id.localeCompare(b.id))
    }),
  delete: (id: string) =>
    Effect.gen(function* () {
      // Asked again for a caller that goes to the provider directly, not through the engine.
      const problem = idProblem(id)
      if (problem !== null) return yield* providerError("snapshot-delete", "invalid-request", problem)
      const orbctl = yield* connect
      yield* orbctl.delete(id)
    })
})
