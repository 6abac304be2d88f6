import { Schema } from "effect"
import { Env, OutputStream } from "../domain/run.ts"

/** docs/agent-protocol.md. Bump on any incompatible change; the agent refuses other versions. */
export const AGENT_PROTOCOL_VERSION = 1 as const

/**
 * The largest output upload this controller accepts, told to the agent when it registers. An
 * agent that is not told sends at most 256 KiB; larger uploads let a fast writer's output
 * cross with a few hundred requests per GiB instead of thousands (each costing a request, a
 * store transaction and a wake-up of every reader).
 */
export const MAX_OUTPUT_BYTES = 4 * 1024 * 1024

export const RegisterRequest = Schema.Struct({
  protocol: Schema.Number,
  instance: Schema.String,
  hostname: Schema.String,
  pid: Schema.Number,
  agentVersion: Schema.String,
  python: Schema.String
})
export type RegisterRequest = typeof RegisterRequest.Type

export const ExitReason = Schema.Literal("exited", "cancelled", "timed_out", "deadman")
export type ExitReason = typeof ExitReason.Type

export const ExitReport = Schema.Struct({
  runId: Schema.String,
  // What a process can exit with on every system an agent runs on.
  exitCode: Schema.NullOr(Schema.Int.pipe(Schema.between(0, 255))),
  signal: Schema.NullOr(Schema.String),
  reason: ExitReason,
  stdoutBytes: Schema.NonNegativeInt,
  stderrBytes: Schema.NonNegativeInt,
  /**
   * Why the agent did not start the run: its `run` event was malformed, or it could not be
   * started (a workdir that is not a directory, say). Such a report also says exit 127, so a
   * controller that knows no `refused` still ends the run failed.
   */
  refused: Schema.optional(Schema.String)
})
export type ExitReport = typeof ExitReport.Type

export const HeartbeatRequest = Schema.Struct({ runs: Schema.Array(Schema.String) })

export const OutputQuery = Schema.Struct({
  runId: Schema.String.pipe(Schema.minLength(1)),
  stream: OutputStream,
  offset: Schema.NumberFromString.pipe(Schema.int(), Schema.nonNegative()),
  /** With a compressed `Content-Encoding` (`gzip`, `deflate`): the upload's inflated length. */
  size: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.nonNegative()))
})

export const RunCommand = Schema.Struct({
  runId: Schema.String,
  command: Schema.String,
  env: Env,
  workdir: Schema.NullOr(Schema.String),
  maxDurationMs: Schema.NullOr(Schema.Number)
})
export type RunCommand = typeof RunCommand.Type

/** Body of the controller-to-controller cancel request (another process asking the owner). */
export const ControlCancelResponse = Schema.Struct({ runId: Schema.String, state: Schema.String })
