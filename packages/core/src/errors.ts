import { Data, Effect } from "effect"

/**
 * Why a provider call failed. The classification decides what the engine does: a retryable
 * reason is retried with back-off, a permanent one fails the launch at once.
 */
export type ProviderErrorReason =
  | "capacity"
  | "throttled"
  | "transient"
  | "auth"
  | "quota"
  | "invalid-request"
  | "not-found"
  | "unavailable"
  | "internal"

const retryableReasons: ReadonlySet<ProviderErrorReason> = new Set(["capacity", "throttled", "transient"])

export const isRetryableReason = (reason: ProviderErrorReason): boolean => retryableReasons.has(reason)

/** A provider API call failed. `retryable` is derived from `reason` so the two never disagree. */
export class ProviderError extends Data.TaggedError("ProviderError")<{
  readonly provider: string
  readonly operation: string
  readonly reason: ProviderErrorReason
  readonly message: string
  readonly cause?: unknown
  /**
   * A `spawn` that failed before it created anything (its own checks, its configuration, a
   * region it cannot use): the engine then records the instance as ended without asking the
   * provider to terminate it, which a provider that cannot spawn often cannot do either. Left
   * out whenever something may have been created.
   */
  readonly nothingStarted?: boolean
  /**
   * The provider already retried this call with back-off of its own (the AWS provider's
   * `callRetry`), so the engine does not retry it again, but for a termination: retries of
   * retries multiplied an unreachable endpoint's wait to about 25 s. `retryable` still says
   * what the failure was.
   */
  readonly retried?: boolean
}> {
  get retryable(): boolean {
    return isRetryableReason(this.reason)
  }
}

/**
 * For a provider's `spawn`: marks the failures of `effect`, the steps before anything is
 * created, as `nothingStarted`.
 */
export const beforeAnythingStarted = <A, R>(effect: Effect.Effect<A, ProviderError, R>): Effect.Effect<A, ProviderError, R> =>
  Effect.mapError(
    effect,
    (e) =>
      new ProviderError({
        provider: e.provider,
        operation: e.operation,
        reason: e.reason,
        message: e.message,
        ...(e.cause === undefined ? {} : { cause: e.cause }),
        ...(e.retried === undefined ? {} : { retried: e.retried }),
        nothingStarted: true
      })
  )

/**
 * A provider whose own settings cannot work (a malformed `SKYREPL_AWS_*` variable, say): a
 * launch on it is refused before anything is recorded.
 */
export class ProviderMisconfigured extends Data.TaggedError("ProviderMisconfigured")<{
  readonly provider: string
  readonly message: string
}> {}

/** A spec string the provider does not understand. `validForms` is shown to the user. */
export class InvalidSpec extends Data.TaggedError("InvalidSpec")<{
  readonly provider: string
  readonly spec: string
  readonly message: string
  readonly validForms: ReadonlyArray<string>
}> {}

export class UnknownProvider extends Data.TaggedError("UnknownProvider")<{
  readonly provider: string
  readonly known: ReadonlyArray<string>
}> {
  override get message(): string {
    return `unknown provider "${this.provider}" (configured: ${this.known.join(", ") || "none"})`
  }
}

/** A Promise client (`SkyRepl.make`) used after its `dispose`: its engine is stopped. */
export class ClientDisposed extends Data.TaggedError("ClientDisposed")<{
  readonly message: string
}> {}

/** `scanOrphans` options that cannot be used (a `minAge` that is not a duration). */
export class InvalidScanOptions extends Data.TaggedError("InvalidScanOptions")<{
  readonly message: string
}> {}

/** `attach` options that cannot be used (an offset that is not a whole number of bytes). */
export class InvalidAttachOptions extends Data.TaggedError("InvalidAttachOptions")<{
  readonly message: string
}> {}

/**
 * A listing filter that cannot be used (`states` that is not a list of that record's states). A
 * string's letters were taken as states, and a number threw a TypeError from the store.
 */
export class InvalidFilter extends Data.TaggedError("InvalidFilter")<{
  readonly message: string
}> {}

export class InvalidLaunchOptions extends Data.TaggedError("InvalidLaunchOptions")<{
  readonly message: string
}> {}

/** `options`: the store was given options it cannot open with (a filename that is empty, say). */
export type StoreErrorReason = "busy" | "constraint" | "corrupt" | "io" | "decode" | "not-found" | "options" | "internal"

export class StoreError extends Data.TaggedError("StoreError")<{
  readonly operation: string
  readonly reason: StoreErrorReason
  readonly message: string
  readonly cause?: unknown
}> {}

/** A state change the domain's state machine does not allow (DESIGN §3). */
export class IllegalTransition extends Data.TaggedError("IllegalTransition")<{
  readonly entity: "instance" | "run" | "allocation" | "manifest"
  readonly id: string
  readonly from: string
  readonly to: string
}> {
  override get message(): string {
    return `illegal ${this.entity} transition ${this.from} → ${this.to} (${this.id})`
  }
}

export class RunNotFound extends Data.TaggedError("RunNotFound")<{ readonly runId: string }> {
  override get message(): string {
    return `no run with id "${this.runId}"`
  }
}

/** The provider does not have this feature (see its capabilities). */
export class Unsupported extends Data.TaggedError("Unsupported")<{
  readonly provider: string
  readonly feature: string
}> {
  override get message(): string {
    return `provider "${this.provider}" does not support ${this.feature}`
  }
}

/** A snapshot name the provider cannot take (see its `nameProblem`). */
export class InvalidSnapshotName extends Data.TaggedError("InvalidSnapshotName")<{
  readonly provider: string
  readonly name: string
  readonly problem: string
}> {
  override get message(): string {
    return `provider "${this.provider}": ${this.problem}`
  }
}

/** A snapshot id that could never be one of the provider's (see its `idProblem`). */
export class InvalidSnapshotId extends Data.TaggedError("InvalidSnapshotId")<{
  readonly provider: string
  readonly id: string
  readonly problem: string
}> {
  override get message(): string {
    return `provider "${this.provider}": ${this.problem}`
  }
}

export class InstanceNotFound extends Data.TaggedError("InstanceNotFound")<{
  readonly target: string
  readonly detail?: string
}> {
  override get message(): string {
    return this.detail ?? `no instance or run named "${this.target}"`
  }
}

/** The agent did not come up, or stopped talking, or spoke out of protocol. */
export class AgentError extends Data.TaggedError("AgentError")<{
  readonly instance: string
  readonly reason: "boot-timeout" | "lost" | "protocol" | "rejected"
  readonly message: string
}> {}

/** The controller's own agent endpoint could not be started. */
export class HubError extends Data.TaggedError("HubError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

export type LaunchError =
  | UnknownProvider
  | ProviderMisconfigured
  | InvalidSpec
  | InvalidLaunchOptions
  | ProviderError
  | StoreError
  | IllegalTransition
  | AgentError
  | HubError

export type AttachError = RunNotFound | StoreError | InvalidAttachOptions
export type CancelError = RunNotFound | StoreError | ProviderError | IllegalTransition | UnknownProvider | HubError
export type ScanError = StoreError | ProviderError | UnknownProvider | ProviderMisconfigured | HubError | InvalidScanOptions
