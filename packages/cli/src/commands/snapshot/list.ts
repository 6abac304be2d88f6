import { listSnapshots, type SkyRepl, type SkyReplSettings } from "@skyrepl/core"
import { Command, Option } from "clipanion"
import { Effect, type Scope } from "effect"
import { type Checked, SkyReplCommand } from "../../base-command.ts"
import { ago, table, toJson } from "../../format.ts"
import { snapshotProviders } from "../../runtime.ts"

/** The providers asked, each once, in the order first given; none for every one that has snapshots. */
type Providers = ReadonlyArray<string>

export class SnapshotListCommand extends SkyReplCommand<Providers> {
  static override paths = [["snapshot", "list"]]
  static override usage = Command.Usage({ description: "list snapshots at every provider that has them" })

  provider = Option.Array("--provider", [], { description: "only this provider (repeatable)" })
  json = Option.Boolean("--json", false, { description: "print JSON" })

  protected preflight(settings: SkyReplSettings): Effect.Effect<Checked<Providers>, unknown, Scope.Scope> {
    // `--provider aws --provider aws` asks aws once, or each of its snapshots would be listed twice.
    const ids = [...new Set(this.provider)]
    return Effect.map(snapshotProviders(settings, ids, undefined), (providers) => ({ flags: ids, providers }))
  }

  protected program(providers: Providers): Effect.Effect<number, unknown, SkyRepl> {
    return Effect.gen(this, function* () {
      const snapshots = yield* listSnapshots(providers.length === 0 ? undefined : providers)
      if (this.json) {
        this.out(toJson(snapshots))
        return 0
      }
      const now = Date.now()
      this.out(
        table(
          ["ID", "NAME", "PROVIDER", "REGION", "STATE", "SOURCE", "AGE"],
          snapshots.map((s) => [s.id, s.name, s.provider, s.region ?? "-", s.state, s.source ?? "-", ago(s.createdAt, now)]),
          this.color
        )
      )
      return 0
    })
  }
}
