import { type InstanceState, liveInstanceStates, listInstances, type SkyRepl } from "@skyrepl/core"
import { Command, Option } from "clipanion"
import { Effect } from "effect"
import { type Checked, nothingToCheck, SkyReplCommand } from "../../base-command.ts"
import { ago, colorState, table, toJson } from "../../format.ts"

export class InstanceListCommand extends SkyReplCommand {
  static override paths = [["instance", "list"]]
  static override usage = Command.Usage({ description: "list instances the store tracks (live ones unless --all)" })

  all = Option.Boolean("--all", false, { description: "include terminated instances" })
  json = Option.Boolean("--json", false, { description: "print JSON" })

  protected preflight(): Effect.Effect<Checked<undefined>> {
    return nothingToCheck
  }

  protected program(): Effect.Effect<number, unknown, SkyRepl> {
    return Effect.gen(this, function* () {
      const states: ReadonlyArray<InstanceState> | undefined = this.all ? undefined : liveInstanceStates
      const instances = yield* listInstances(states === undefined ? {} : { states })
      if (this.json) {
        // The agent token is a credential: it never leaves the store through a listing.
        this.out(toJson(instances.map(({ agentToken: _token, ...rest }) => rest)))
        return 0
      }
      const now = Date.now()
      const live: ReadonlySet<InstanceState> = new Set(liveInstanceStates)
      this.out(
        table(
          ["NAME", "STATE", "PROVIDER", "SPEC", "REGION", "AGE", "LEASE"],
          instances.map((i) => [
            i.name,
            colorState(i.state, this.color),
            i.provider,
            i.spec || "-",
            i.region ?? "-",
            ago(i.createdAt, now),
            // A lease matters only while the instance may still be running.
            i.leaseExpiresAt === null || !live.has(i.state) ? "-" : i.leaseExpiresAt > now ? "held" : "expired"
          ]),
          this.color
        )
      )
      return 0
    })
  }
}
