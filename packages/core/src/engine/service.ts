import type { Effect, PubSub } from "effect"
import type { SkyReplSettings } from "../config.ts"
import type { Controller } from "../domain/controller.ts"
import type { RunState } from "../domain/run.ts"
import type { UnknownProvider } from "../errors.ts"
import type { AgentHub, AgentSession } from "../hub/agent-hub.ts"
import type { ProviderService } from "../provider.ts"
import type { StoreService } from "../store.ts"

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
  readonly complete: (result: RunResult) => Effect.Effect<void>
}

export interface SkyReplService {
  readonly settings: SkyReplSettings
  readonly store: StoreService
  readonly controller: Controller
  readonly providers: ReadonlyMap<string, ProviderService>
  /** The agent endpoint: how the engine talks to agents; not part of the public API. @internal */
  readonly hub: AgentHub
  /** Runs hosted by this process, for in-process waiters; not part of the public API. @internal */
  readonly live: Map<string, LiveRun>
  /** Run ids whose output or state changed in this process: wakes `attach` without polling. */
  readonly changes: PubSub.PubSub<string>
  readonly provider: (id: string) => Effect.Effect<ProviderService, UnknownProvider>
}

