import { Schema } from "effect"
import { makeStateMachine } from "./state-machine.ts"

export const InstanceState = Schema.Literal(
  "requested",
  "spawning",
  "booting",
  "ready",
  "allocated",
  "terminating",
  "terminated",
  "failed"
)
export type InstanceState = typeof InstanceState.Type

/**
 * `failed` is not terminal: a failed spawn may still have left a resource behind, so a failed
 * instance can still go to `terminating` and is only `terminated` once the provider confirms it.
 */
export const InstanceMachine = makeStateMachine<InstanceState>("instance", {
  requested: ["spawning", "terminating", "failed"],
  spawning: ["booting", "terminating", "failed"],
  booting: ["ready", "terminating", "failed"],
  ready: ["allocated", "terminating", "failed"],
  allocated: ["ready", "terminating", "failed"],
  terminating: ["terminated", "failed"],
  failed: ["terminating", "terminated"],
  terminated: []
})

/** States in which a provider resource may exist and someone must eventually end it. */
export const liveInstanceStates: ReadonlyArray<InstanceState> = InstanceMachine.states.filter(
  (s) => s !== "terminated"
)

export class Instance extends Schema.Class<Instance>("Instance")({
  id: Schema.String,
  name: Schema.String,
  manifestId: Schema.String,
  provider: Schema.String,
  spec: Schema.String,
  region: Schema.NullOr(Schema.String),
  providerRef: Schema.NullOr(Schema.String),
  state: InstanceState,
  ownerControllerId: Schema.NullOr(Schema.String),
  leaseExpiresAt: Schema.NullOr(Schema.Number),
  agentToken: Schema.String,
  error: Schema.NullOr(Schema.String),
  createdAt: Schema.Number,
  updatedAt: Schema.Number
}) {}
