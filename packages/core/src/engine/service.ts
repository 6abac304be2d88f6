import type { Effect } from "effect"
import type { SkyReplSettings } from "../config.ts"
import type { RunState } from "../domain/run.ts"
import type { HubError, ProviderError, StoreError, UnknownProvider } from "../errors.ts"
import type { AgentHub, AgentSession } from "../hub/agent-hub.ts"
import type { ProviderService } from "../provider.ts"
import type { StoreService } from "../store.ts"
import type { RunChanges } from "./run-changes.ts"

/** The result of a run once it has ended. */
export interface RunResult {
  readonly runId: string
  readonly state: Extract<RunState, "succeeded" | "failed" | "cancelled" | "timed_out">
  readonly exitCode: number | null
  readonly signal: string | null
  readonly error: string | null
}

/** A run hosted by this process: what in-process callers wait on. */
export interface LiveRun {
  readonly runId: string
  readonly instanceId: string
  readonly session: AgentSession
  readonly finished: Effect.Effect<RunResult>
  /** Whether the run has ended here, recorded in the store or not (a store that failed). */
  readonly ended: Effect.Effect<boolean>
  readonly complete: (result: RunResult) => Effect.Effect<void>
}

/** Who an engine is, fixed when it starts. */
export interface ControllerIdentity {
  readonly id: string
  readonly pid: number
  /** Where `pid` can be checked: the host name, with the boot and pid namespace (`machineName`). */
  readonly hostname: string
}

export interface SkyReplService {
  readonly settings: SkyReplSettings
  readonly store: StoreService
  /**
   * This engine's identity. It is recorded in the store (with its agent endpoint) only when the
   * engine first takes ownership of an instance, through `register`.
   */
  readonly controller: ControllerIdentity
  /** Every provider this engine offers, built or not yet. */
  readonly providerIds: ReadonlyArray<string>
  /**
   * Starts the agent endpoint and records this controller in the store, once; every path that
   * takes ownership of an instance (a launch, a claim) runs it first. Returns the endpoint: how
   * the engine talks to agents. Not part of the public API. @internal
   */
  readonly register: Effect.Effect<AgentHub, HubError | StoreError>
  /** Whether `register` has run. @internal */
  readonly registered: () => boolean
  /** Runs hosted by this process, for in-process waiters; not part of the public API. @internal */
  readonly live: Map<string, LiveRun>
  /** Runs whose output or state changed in this process: wakes `attach` without polling. @internal */
  readonly changes: RunChanges
  /** A provider by id; one given as a `LazyProvider` is built on this first call. */
  readonly provider: (id: string) => Effect.Effect<ProviderService, UnknownProvider | ProviderError>
  /** A provider only if it is already built: for code that cannot wait (an exiting process). @internal */
  readonly builtProvider: (id: string) => ProviderService | undefined
}

