import { checkSnapshotId, deleteSnapshot, type SkyRepl, type SkyReplSettings } from "@skyrepl/core"
import { Command, Option } from "clipanion"
import { Effect, type Scope } from "effect"
import { type Checked, SkyReplCommand } from "../../base-command.ts"
import { toJson } from "../../format.ts"
import { oneValue } from "../../options.ts"
import { snapshotProviders } from "../../runtime.ts"

export class SnapshotDeleteCommand extends SkyReplCommand {
  static override paths = [["snapshot", "delete"]]
  static override usage = Command.Usage({ description: "delete a snapshot (idempotent)" })

  id = Option.String({ name: "snapshot-id" })
  provider = oneValue("--provider", { required: true, description: "the provider that holds it" })
  region = oneValue("--region", { description: "its region, for providers that have them" })
  json = Option.Boolean("--json", false, { description: "print JSON" })

  protected preflight(settings: SkyReplSettings): Effect.Effect<Checked<undefined>, unknown, Scope.Scope> {
    return Effect.gen(this, function* () {
      const providers = yield* snapshotProviders(settings, [this.provider], this.region)
      // An id that could never be one of the provider's snapshots is a usage error, found before
      // the store is opened (the engine asks again for a caller of the SDK).
      yield* Effect.forEach(providers, (provider) => checkSnapshotId(provider, this.id), { discard: true })
      return { flags: undefined, providers }
    })
  }

  protected program(): Effect.Effect<number, unknown, SkyRepl> {
    return Effect.gen(this, function* () {
      yield* deleteSnapshot(this.provider, this.id, this.region ?? null)
      if (this.json) this.out(toJson({ id: this.id, provider: this.provider, deleted: true }))
      else this.out(`deleted ${this.id}\n`)
      return 0
    })
  }
}
