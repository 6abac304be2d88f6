import { Schema } from "effect"

/**
 * A process hosting the engine. `hubUrl` + `secret` let another process ask this one to
 * cancel a run it owns; `leaseExpiresAt` says whether it is still alive.
 */
export class Controller extends Schema.Class<Controller>("Controller")({
  id: Schema.String,
  pid: Schema.Number,
  hostname: Schema.String,
  hubUrl: Schema.String,
  secret: Schema.String,
  startedAt: Schema.Number,
  leaseExpiresAt: Schema.Number
}) {}
