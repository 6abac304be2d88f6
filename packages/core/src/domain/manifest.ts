import { Schema } from "effect"
import { makeStateMachine } from "./state-machine.ts"

export const ManifestState = Schema.Literal("open", "closed")
export type ManifestState = typeof ManifestState.Type

export const ManifestMachine = makeStateMachine<ManifestState>("manifest", {
  open: ["closed"],
  closed: []
})

export class Manifest extends Schema.Class<Manifest>("Manifest")({
  id: Schema.String,
  controllerId: Schema.String,
  state: ManifestState,
  createdAt: Schema.Number
}) {}
