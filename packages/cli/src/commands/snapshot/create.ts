import { createSnapshot, type SkyRepl } from "@skyrepl/core"
import { Command, Option } from "clipanion"
import { Effect } from "effect"
import { type Checked, nothingToCheck, SkyReplCommand } from "../../base-command.ts"
import { toJson } from "../../format.ts"
import { oneValue } from "../../options.ts"

export class SnapshotCreateCommand extends SkyReplCommand {
  static override paths = [["snapshot", "create"]]
  static override usage = Command.Usage({
    description: "snapshot a live instance (providers with snapshots: aws, orbstack)",
    examples: [["Snapshot the instance of a running run", "$0 snapshot create <run-id> --name base-image"]]
  })

  target = Option.String({ name: "run-id|instance-name" })
  name = oneValue("--name", { description: "snapshot name (default: the instance name and a timestamp)" })
  json = Option.Boolean("--json", false, { description: "print JSON" })

  protected preflight(): Effect.Effect<Checked<undefined>> {
    return nothingToCheck
  }

  protected program(): Effect.Effect<number, unknown, SkyRepl> {
    return Effect.gen(this, function* () {
      const snapshot = yield* createSnapshot(this.target, this.name)
      if (this.json) this.out(toJson(snapshot))
      else this.out(`${snapshot.id} ${snapshot.name} (${snapshot.provider}${snapshot.region === null ? "" : `, ${snapshot.region}`}: ${snapshot.state})\n`)
      return 0
    })
  }
}
