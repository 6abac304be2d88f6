import { Schema } from "effect"
import { makeStateMachine } from "./state-machine.ts"

export const RunState = Schema.Literal("pending", "provisioning", "running", "succeeded", "failed", "cancelled", "timed_out")
export type RunState = typeof RunState.Type

export const RunMachine = makeStateMachine<RunState>("run", {
  pending: ["provisioning", "failed", "cancelled"],
  provisioning: ["running", "failed", "cancelled", "timed_out"],
  running: ["succeeded", "failed", "cancelled", "timed_out"],
  succeeded: [],
  failed: [],
  cancelled: [],
  timed_out: []
})

export const Env = Schema.Record({ key: Schema.String, value: Schema.String })

export class Run extends Schema.Class<Run>("Run")({
  id: Schema.String,
  manifestId: Schema.String,
  instanceId: Schema.String,
  provider: Schema.String,
  command: Schema.String,
  env: Env,
  workdir: Schema.NullOr(Schema.String),
  maxDurationMs: Schema.NullOr(Schema.Number),
  state: RunState,
  exitCode: Schema.NullOr(Schema.Number),
  signal: Schema.NullOr(Schema.String),
  error: Schema.NullOr(Schema.String),
  ownerControllerId: Schema.NullOr(Schema.String),
  createdAt: Schema.Number,
  startedAt: Schema.NullOr(Schema.Number),
  endedAt: Schema.NullOr(Schema.Number)
}) {}

export const OutputStream = Schema.Literal("stdout", "stderr")
export type OutputStream = typeof OutputStream.Type

/** One piece of a run's output. `offset` is the byte offset of `data` within its stream. */
export class OutputChunk extends Schema.Class<OutputChunk>("OutputChunk")({
  runId: Schema.String,
  seq: Schema.Number,
  stream: OutputStream,
  offset: Schema.Number,
  data: Schema.Uint8ArrayFromSelf
}) {}

/** Where to resume reading: the next byte wanted on each stream. */
export const Offsets = Schema.Struct({ stdout: Schema.Number, stderr: Schema.Number })
export type Offsets = typeof Offsets.Type
