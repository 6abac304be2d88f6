import { Schema } from "effect"
import { makeStateMachine } from "./state-machine.ts"

export const AllocationState = Schema.Literal("active", "released")
export type AllocationState = typeof AllocationState.Type

export const AllocationMachine = makeStateMachine<AllocationState>("allocation", {
  active: ["released"],
  released: []
})

export class Allocation extends Schema.Class<Allocation>("Allocation")({
  id: Schema.String,
  instanceId: Schema.String,
  runId: Schema.String,
  state: AllocationState,
  createdAt: Schema.Number,
  releasedAt: Schema.NullOr(Schema.Number)
}) {}
