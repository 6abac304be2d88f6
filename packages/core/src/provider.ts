import { Context, Effect, Schema } from "effect"
import { boxedPrimitiveProblem } from "./boxed.ts"
import { type InvalidSpec, type ProviderError, ProviderMisconfigured } from "./errors.ts"

/** The version of this interface; a provider states which one it implements. */
export const PROVIDER_SPEC_VERSION = 1 as const

export const Isolation = Schema.Literal("namespaces", "vm", "none")
export type Isolation = typeof Isolation.Type

export interface ProviderCapabilities {
  readonly isolation: Isolation
  readonly spot: boolean
  readonly snapshots: boolean
  readonly regions: boolean
  readonly warmPool: boolean
  readonly ssh: boolean
  /**
   * The agent runs on the controller's own machine (a local sandbox): its uploads cross no
   * network, so a controller whose zlib is faster than the agent's (on Bun) has it send output
   * as written and compresses what it stores. Absent or false: the agent compresses, and the
   * network carries a fraction of a chatty run's bytes.
   */
  readonly agentOnHost?: boolean
}

/**
 * A spec after the provider parsed it. `canonical` is stored on the instance record and parses
 * back to the same spec; `attributes` are the provider's own parsed fields.
 */
export interface ParsedSpec {
  readonly provider: string
  readonly canonical: string
  readonly region: string | null
  readonly attributes: Readonly<Record<string, string>>
}

/** Launch settings that only some providers support; a provider without the capability refuses them. */
export interface SpecOptions {
  readonly region?: string
  readonly spot?: boolean
}

export interface ListHint {
  readonly regions?: ReadonlyArray<string>
}

/** A saved image of an instance's disk, from which later instances can start. */
export interface Snapshot {
  readonly id: string
  readonly name: string
  readonly provider: string
  readonly region: string | null
  /** Instance name it was taken from, when the provider still knows. */
  readonly source: string | null
  /**
   * `deleting`: a delete began and did not finish (on AWS, the image is deregistered and some
   * of its EBS snapshots are still there, and billed); deleting the id again finishes it.
   */
  readonly state: "pending" | "available" | "failed" | "deleting"
  readonly createdAt: number | null
}

/** Providers with `capabilities.snapshots` implement this. */
export interface ProviderSnapshots {
  /**
   * What is wrong with `name` as a snapshot name here, or null: asked before anything else, so
   * a name the provider cannot take is the caller's mistake, not a failed call. Left out by a
   * provider that makes any name fit (AWS cleans it to what an AMI name allows).
   */
  readonly nameProblem?: (name: string) => string | null
  /**
   * What is wrong with `id` as one of this provider's snapshot ids, or null: asked before a
   * delete, so an id that could never be a snapshot here is the caller's mistake (shown before
   * anything is opened or asked), not a failed call. Left out by a provider that takes any id.
   */
  readonly idProblem?: (id: string) => string | null
  readonly create: (ref: InstanceRef, name: string) => Effect.Effect<Snapshot, ProviderError>
  readonly list: () => Effect.Effect<ReadonlyArray<Snapshot>, ProviderError>
  /** Idempotent: a snapshot that is already gone is success. */
  readonly delete: (id: string, region: string | null) => Effect.Effect<void, ProviderError>
}

/** How the agent ends its instance when it must (dead-man switch, shutdown). */
export type AgentShutdown = "exit" | "poweroff"

/**
 * Everything a provider needs to start the agent on a new instance. The provider decides how
 * to deliver it (direct exec, cloud-init, `orbctl run`).
 */
export interface Bootstrap {
  readonly agentUrl: string
  readonly token: string
  readonly heartbeatIntervalMs: number
  readonly deadmanTimeoutMs: number
  /** Absolute path of the agent script on the controller's machine. */
  readonly agentScript: string
  /**
   * The run the instance is launched for. A provider that can hand it to the agent as privately
   * as the token (`agentRunVariables`: the agent's own environment, never a command line or
   * instance metadata) may do so, and the agent starts it at once instead of after registering
   * and being sent it. Optional for a provider: the engine sends the run after registration
   * either way, and the agent ignores a run it already started.
   */
  readonly run?: BootstrapRun
}

/** A run as the engine sends it to the agent (the `run` event's data, docs/agent-protocol.md). */
export interface BootstrapRun {
  readonly runId: string
  readonly command: string
  readonly env: Readonly<Record<string, string>>
  readonly workdir: string | null
  readonly maxDurationMs: number | null
}

/** Identifies an instance at the provider: the name always, the provider's own id once known. */
export interface InstanceRef {
  readonly name: string
  readonly providerRef: string | null
  readonly region: string | null
}

export interface SpawnResult {
  readonly providerRef: string
  readonly region: string | null
  /**
   * Set when the resource exists but its bootstrap reported a failure, in one line naming where
   * its log is. Not fatal (the agent may still register); the engine records it on the instance,
   * warns, and names it if the agent never registers.
   */
  readonly bootstrapFailure?: string
}

/** What the provider says about a resource right now. `gone` means confirmed gone. */
export type ObservedState = "pending" | "running" | "stopping" | "gone"

export interface ProviderInstance {
  readonly name: string
  readonly providerRef: string
  readonly region: string | null
  readonly state: Exclude<ObservedState, "gone">
  /** Epoch ms, when the provider knows it. */
  readonly createdAt: number | null
}

/**
 * A provider. Building its layer must be cheap and must not fail because the environment lacks
 * something (no credentials, no `orbctl`): the CLI builds every provider for every command.
 * Such problems surface on first use as a `ProviderError` with reason `unavailable`.
 */
export interface ProviderService {
  readonly id: string
  readonly specVersion: typeof PROVIDER_SPEC_VERSION
  readonly capabilities: ProviderCapabilities
  /**
   * What is wrong with the provider's own settings, when something is: every call would fail
   * on it. Known when the provider is built (no I/O), so a launch refuses it with nothing
   * recorded (`ProviderMisconfigured`).
   */
  readonly configurationProblem?: string
  /**
   * Parses and validates a spec. `options` carry region and spot; the engine refuses them
   * before this is called when the provider's capabilities say it has no regions or no spot.
   */
  readonly parseSpec: (spec: string | undefined, options?: SpecOptions) => Effect.Effect<ParsedSpec, InvalidSpec>
  /** Creates the resource named `name`. The name must be written to the provider's resource. */
  readonly spawn: (name: string, spec: ParsedSpec, bootstrap: Bootstrap) => Effect.Effect<SpawnResult, ProviderError>
  readonly describe: (ref: InstanceRef) => Effect.Effect<ObservedState, ProviderError>
  /**
   * Every SkyREPL-owned resource, all regions, all pages, with no help from the store. `hint`
   * names regions the store knows this provider used; a provider with regions adds them to the
   * ones it always scans (its default and configured regions), and must work without it.
   */
  readonly list: (hint?: ListHint) => Effect.Effect<ReadonlyArray<ProviderInstance>, ProviderError>
  /** Idempotent: an instance that is already gone is success. */
  readonly terminate: (ref: InstanceRef) => Effect.Effect<void, ProviderError>
  /**
   * The last lines the instance wrote to its console (its first processes' stdout and stderr,
   * a VM's serial console), oldest first, each one line. Read only when an instance ended or
   * stayed silent while booting, so that the launch's error says why (an interpreter that
   * cannot start prints the reason there, and nowhere else). Best effort: empty when there is
   * nothing or it cannot be read. Optional.
   */
  readonly consoleTail?: (ref: InstanceRef) => Effect.Effect<ReadonlyArray<string>>
  readonly snapshots?: ProviderSnapshots
  /**
   * Best effort, synchronous: used only from a process `exit` handler (leaving a REPL, a
   * `process.exit` in user code), where no asynchronous work can run. Providers that can end an
   * instance without I/O waits (local process trees, a CLI call) implement it; the store is
   * reconciled by the next SkyREPL process, which finds the owner dead.
   */
  readonly terminateSync?: (ref: InstanceRef) => void
}

/**
 * A provider package's `layer()` yields this tag. `SkyRepl.layer` builds each provider layer on
 * its own and collects the services by `id`, so provider packages never know about each other.
 */
export class Provider extends Context.Tag("@skyrepl/core/Provider")<Provider, ProviderService>() {}

/** Fails with `ProviderMisconfigured` when `provider` says its settings cannot work. */
export const checkProviderConfiguration = (provider: ProviderService): Effect.Effect<void, ProviderMisconfigured> =>
  provider.configurationProblem === undefined
    ? Effect.void
    : Effect.fail(new ProviderMisconfigured({ provider: provider.id, message: provider.configurationProblem }))

/**
 * What is wrong with the shape of a provider's options given from plain JavaScript (or behind a
 * cast), or null: options that are no object (a `null` made the provider throw a TypeError at
 * its first launch), or a key the provider does not know (a misspelt `region` was dropped, and
 * the default used in its place). The provider reports it as its configuration problem, on
 * first use, as it does a bad value.
 */
export const optionsShapeProblem = (provider: string, given: unknown, known: ReadonlyArray<string>): string | null => {
  if (given === undefined) return null
  if (typeof given !== "object" || given === null || Array.isArray(given)) {
    return `${provider} options must be an object, not ${JSON.stringify(given) ?? String(given)}`
  }
  // Before the keys: a `new String("x")`'s are "0", "1", ….
  const boxed = boxedPrimitiveProblem(given, `${provider} options`, `${provider} options: `)
  if (boxed !== null) return boxed
  const unknown = Object.keys(given).find((key) => !known.includes(key))
  return unknown === undefined ? null : `${JSON.stringify(unknown)} is not one of the ${provider} options (${known.join(", ")})`
}
