import { Effect, Either, Option, Schema, type Scope, Stream } from "effect"
import { boxedPrimitiveProblem, boxedShown } from "../boxed.ts"
import { type Allocation, AllocationState } from "../domain/allocation.ts"
import { type Instance, InstanceState } from "../domain/instance.ts"
import { type OutputChunk, type Run, RunState } from "../domain/run.ts"
import { type AttachError, type CancelError, InvalidFilter, type LaunchError, RunNotFound, type ScanError, type StoreError } from "../errors.ts"
import { describeParseError } from "../parse-error.ts"
import type { AllocationFilter, InstanceFilter, RunFilter } from "../store.ts"
import { type AttachOptions, attachWith } from "./attach.ts"
import { type CancelResult, cancelRun } from "./cancel.ts"
import { type LaunchOptions, type RunHandle, launchWith } from "./launch.ts"
import { type OrphanReport, type ScanOptions, scanWith } from "./orphans.ts"
import { SkyRepl } from "./skyrepl.ts"
import { createSnapshotWith, deleteSnapshotWith, listSnapshotsWith, type SnapshotError } from "./snapshots.ts"
import type { Snapshot } from "../provider.ts"

/** Launches a command on a new instance that lives no longer than the current scope. */
export const launch = (options: LaunchOptions): Effect.Effect<RunHandle, LaunchError, Scope.Scope | SkyRepl> =>
  Effect.flatMap(SkyRepl, (engine) => launchWith(engine, options))

/**
 * A run id from a caller in plain JavaScript (or behind a cast) can be anything; one that is not
 * a string names no run. Bound to a statement as it was, an object was read as named parameters,
 * and `cancel({})` failed as a StoreError ("Too few parameter values").
 */
const runIdGiven = (runId: unknown): Effect.Effect<string, RunNotFound> =>
  typeof runId === "string"
    ? Effect.succeed(runId)
    : // Shown as JSON, `new String("r1")` read as `no run with id "r1"` while run r1 was there.
      Effect.fail(new RunNotFound({ runId: boxedShown(runId) ?? JSON.stringify(runId) ?? String(runId) }))

/** A run's output from `from` (default: the start), following live output unless `follow: false`. */
export const attach = (runId: string, options?: AttachOptions): Stream.Stream<OutputChunk, AttachError, SkyRepl> =>
  Stream.unwrap(Effect.zipWith(runIdGiven(runId), SkyRepl, (id, engine) => attachWith(engine, id, options)))

/** Cancels a run from any process. Idempotent. */
export const cancel = (runId: string): Effect.Effect<CancelResult, CancelError, SkyRepl> =>
  Effect.flatMap(runIdGiven(runId), (id) => Effect.flatMap(SkyRepl, (engine) => cancelRun(engine, id)))

/** Lists (and with `reap: true` terminates) provider resources that no live controller owns. */
export const scanOrphans = (options?: ScanOptions): Effect.Effect<OrphanReport, ScanError, SkyRepl> =>
  Effect.flatMap(SkyRepl, (engine) => scanWith(engine, options))

export const getRun = (runId: string): Effect.Effect<Run, RunNotFound | StoreError, SkyRepl> =>
  Effect.flatMap(runIdGiven(runId), (id) =>
    Effect.flatMap(SkyRepl, (engine) =>
      engine.store.getRun(id).pipe(
        Effect.flatMap(Option.match({ onNone: () => Effect.fail(new RunNotFound({ runId: id })), onSome: Effect.succeed }))
      )
    )
  )

/**
 * Filters come from callers in plain JavaScript too (or behind a cast): checked here, before the
 * store builds a query from them.
 */
const statesOf = <L extends readonly [string, ...Array<string>]>(record: string, state: Schema.Literal<L>) =>
  // `override`: one line naming the states, rather than one per state that did not match.
  Schema.Array(
    state.annotations({
      message: (issue) => ({ message: `${JSON.stringify(issue.actual)} is not ${record} state (${state.literals.join(", ")})`, override: true })
    })
  )
// A limit of the wrong kind was refused only by the store, as a StoreError (as if the database
// had failed); it is the caller's mistake like any other in the filter.
const Limit = Schema.Number.pipe(Schema.int(), Schema.nonNegative()).annotations({
  message: (issue) => ({ message: `must be a whole number, 0 or more, not ${JSON.stringify(issue.actual) ?? String(issue.actual)}`, override: true })
})
const RunFilterShape = Schema.Struct({ states: Schema.optional(statesOf("a run", RunState)), limit: Schema.optional(Limit) })
const InstanceFilterShape = Schema.Struct({
  states: Schema.optional(statesOf("an instance", InstanceState)),
  provider: Schema.optional(Schema.String),
  ownerControllerId: Schema.optional(Schema.String)
})
const AllocationFilterShape = Schema.Struct({ states: Schema.optional(statesOf("an allocation", AllocationState)), instanceId: Schema.optional(Schema.String) })

const checkFilter = <A, I>(
  operation: string,
  shape: Schema.Schema<A, I> & { readonly fields: Schema.Struct.Fields },
  filter: unknown
): Effect.Effect<void, InvalidFilter> => {
  if (filter === undefined) return Effect.void
  if (typeof filter !== "object" || filter === null) {
    return Effect.fail(new InvalidFilter({ message: `${operation}: the filter must be an object, not ${JSON.stringify(filter) ?? String(filter)}` }))
  }
  const boxed = boxedPrimitiveProblem(filter, "the filter")
  if (boxed !== null) return Effect.fail(new InvalidFilter({ message: `${operation}: ${boxed}` }))
  const decoded = Schema.decodeUnknownEither(shape)(filter)
  if (Either.isLeft(decoded)) return Effect.fail(new InvalidFilter({ message: `${operation}: ${describeParseError(decoded.left)}` }))
  // A misspelt key was dropped, and the listing then held everything: `{ state: ["running"] }`
  // listed every run, and `{ limit: 5 }` every instance.
  const known = Object.keys(shape.fields)
  const unknown = Object.keys(filter).find((key) => !known.includes(key))
  return unknown === undefined
    ? Effect.void
    : Effect.fail(new InvalidFilter({ message: `${operation}: ${JSON.stringify(unknown)} is not one of its filters (${known.join(", ")})` }))
}

export const listRuns = (filter?: RunFilter): Effect.Effect<ReadonlyArray<Run>, StoreError | InvalidFilter, SkyRepl> =>
  Effect.zipRight(checkFilter("listRuns", RunFilterShape, filter), Effect.flatMap(SkyRepl, (engine) => engine.store.listRuns(filter)))

export const listInstances = (filter?: InstanceFilter): Effect.Effect<ReadonlyArray<Instance>, StoreError | InvalidFilter, SkyRepl> =>
  Effect.zipRight(checkFilter("listInstances", InstanceFilterShape, filter), Effect.flatMap(SkyRepl, (engine) => engine.store.listInstances(filter)))

export const listAllocations = (filter?: AllocationFilter): Effect.Effect<ReadonlyArray<Allocation>, StoreError | InvalidFilter, SkyRepl> =>
  Effect.zipRight(checkFilter("listAllocations", AllocationFilterShape, filter), Effect.flatMap(SkyRepl, (engine) => engine.store.listAllocations(filter)))

/** Snapshots a live instance, named directly or by a run on it. */
export const createSnapshot = (target: string, name?: string): Effect.Effect<Snapshot, SnapshotError, SkyRepl> =>
  Effect.flatMap(SkyRepl, (engine) => createSnapshotWith(engine, target, name))

export const listSnapshots = (providers?: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<Snapshot>, SnapshotError, SkyRepl> =>
  Effect.flatMap(SkyRepl, (engine) => listSnapshotsWith(engine, providers))

export const deleteSnapshot = (provider: string, id: string, region: string | null = null): Effect.Effect<void, SnapshotError, SkyRepl> =>
  Effect.flatMap(SkyRepl, (engine) => deleteSnapshotWith(engine, provider, id, region))
