import type { Effect, Option } from "effect"
import { Context } from "effect"
import type { Allocation, AllocationState } from "./domain/allocation.ts"
import type { Controller } from "./domain/controller.ts"
import type { Instance, InstanceState } from "./domain/instance.ts"
import type { Manifest } from "./domain/manifest.ts"
import type { OutputChunk, OutputStream, Run, RunState } from "./domain/run.ts"
import type { IllegalTransition, StoreError } from "./errors.ts"

export interface InstancePatch {
  readonly providerRef?: string | null
  readonly region?: string | null
  readonly error?: string | null
}

export interface RunPatch {
  readonly exitCode?: number | null
  readonly signal?: string | null
  readonly error?: string | null
  readonly startedAt?: number | null
  readonly endedAt?: number | null
}

export interface InstanceFilter {
  readonly states?: ReadonlyArray<InstanceState>
  readonly provider?: string
  readonly ownerControllerId?: string
}

export interface AllocationFilter {
  readonly states?: ReadonlyArray<AllocationState>
  readonly instanceId?: string
}

export interface RunFilter {
  readonly states?: ReadonlyArray<RunState>
  readonly limit?: number
}

/**
 * Durable state. Every method is atomic; transitions are compare-and-set against the state the
 * record is in, checked with the domain's state machines, so two processes cannot both move a
 * record out of the same state.
 */
export interface StoreService {
  /** The control plane id of this store, created on first open and stable afterwards. */
  readonly controlId: string

  readonly upsertController: (controller: Controller) => Effect.Effect<void, StoreError>
  readonly getController: (id: string) => Effect.Effect<Option.Option<Controller>, StoreError>
  readonly removeController: (id: string) => Effect.Effect<void, StoreError>
  readonly listControllers: Effect.Effect<ReadonlyArray<Controller>, StoreError>
  /**
   * Removes a controller's row unless it owns a live (not terminated) instance, in one
   * statement: a dead controller's row is forgotten only once nothing of it is left to reap.
   * Returns whether the row was removed.
   */
  readonly removeIdleController: (id: string) => Effect.Effect<boolean, StoreError>
  /** Extends the lease of a controller and of every live instance it owns, in one transaction. */
  readonly renewLeases: (controllerId: string, expiresAt: number) => Effect.Effect<void, StoreError>

  /** Writes the manifest, its instance (state `requested`) and its run (state `pending`) together. */
  readonly createLaunch: (manifest: Manifest, instance: Instance, run: Run) => Effect.Effect<void, StoreError>
  readonly closeManifest: (id: string) => Effect.Effect<void, StoreError>
  readonly getManifest: (id: string) => Effect.Effect<Option.Option<Manifest>, StoreError>

  readonly getInstance: (id: string) => Effect.Effect<Option.Option<Instance>, StoreError>
  readonly getInstanceByName: (name: string) => Effect.Effect<Option.Option<Instance>, StoreError>
  readonly listInstances: (filter?: InstanceFilter) => Effect.Effect<ReadonlyArray<Instance>, StoreError>
  readonly transitionInstance: (
    id: string,
    to: InstanceState,
    patch?: InstancePatch
  ) => Effect.Effect<Instance, StoreError | IllegalTransition>
  /**
   * Atomically takes ownership of live instances whose owner's lease expired before `now`,
   * giving them to `controllerId` until `leaseExpiresAt`. Returns the instances claimed.
   */
  readonly claimExpiredInstances: (
    controllerId: string,
    now: number,
    leaseExpiresAt: number
  ) => Effect.Effect<ReadonlyArray<Instance>, StoreError>
  /** Takes ownership of one instance, e.g. when cancelling a run whose owner is gone. */
  readonly claimInstance: (
    id: string,
    controllerId: string,
    leaseExpiresAt: number
  ) => Effect.Effect<Instance, StoreError>

  readonly createAllocation: (allocation: Allocation) => Effect.Effect<void, StoreError>
  readonly transitionAllocation: (
    id: string,
    to: AllocationState,
    at: number
  ) => Effect.Effect<Allocation, StoreError | IllegalTransition>
  /**
   * Oldest first. `states` keeps those in one of them (none: nothing); `instanceId` keeps one
   * instance's, which a termination reads and must not cost a scan of every allocation ever made.
   */
  readonly listAllocations: (filter?: AllocationFilter) => Effect.Effect<ReadonlyArray<Allocation>, StoreError>

  readonly getRun: (id: string) => Effect.Effect<Option.Option<Run>, StoreError>
  readonly listRuns: (filter?: RunFilter) => Effect.Effect<ReadonlyArray<Run>, StoreError>
  readonly listRunsForInstance: (instanceId: string) => Effect.Effect<ReadonlyArray<Run>, StoreError>
  readonly transitionRun: (
    id: string,
    to: RunState,
    patch?: RunPatch
  ) => Effect.Effect<Run, StoreError | IllegalTransition>

  /**
   * Appends output at `offset` of `stream`. Idempotent: bytes already stored are skipped, so an
   * agent's retry never duplicates output. Returns the next expected offset of that stream; a
   * chunk that starts beyond it is refused with reason `constraint` (a gap would corrupt replay).
   *
   * `deflated`, when given, is `data` DEFLATE-compressed in the zlib or the gzip wrapper (as the
   * agent uploads it; the first bytes tell which, see `inflateExact`'s `either`): a store may
   * keep those bytes instead of `data`, and must still give back `data` when read.
   * The caller gives up `data`: a store may hand that very array to a reader (sparing it the
   * inflating), so it must not be changed after the call.
   */
  readonly appendOutput: (
    runId: string,
    stream: OutputStream,
    offset: number,
    data: Uint8Array,
    deflated?: Uint8Array
  ) => Effect.Effect<number, StoreError>
  /**
   * Where `stream` of a run continues: the offset after its last stored byte, 0 before any.
   * Answers an agent that skipped ahead without reading the output; an unknown run is `not-found`.
   */
  readonly outputEnd: (runId: string, stream: OutputStream) => Effect.Effect<number, StoreError>
  /** Chunks of a run in write order with `seq` greater than `afterSeq`, at most `limit`, as written (never compressed). */
  readonly readOutput: (
    runId: string,
    afterSeq: number,
    limit: number
  ) => Effect.Effect<ReadonlyArray<OutputChunk>, StoreError>
}

export class Store extends Context.Tag("@skyrepl/core/Store")<Store, StoreService>() {}
