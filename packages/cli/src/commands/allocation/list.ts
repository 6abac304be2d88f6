import { AllocationState, listAllocations, type SkyRepl } from "@skyrepl/core"
import { Command, Option } from "clipanion"
import { Effect, Either, Schema } from "effect"
import { SkyReplCommand } from "../../base-command.ts"
import { UsageFailure } from "../../errors.ts"
import { ago, colorState, table, toJson } from "../../format.ts"

export class AllocationListCommand extends SkyReplCommand {
  static override paths = [["allocation", "list"]]
  static override usage = Command.Usage({ description: "list allocations: which run holds which instance" })

  state = Option.String("--state", { description: "active or released" })
  json = Option.Boolean("--json", false, { description: "print JSON" })

  protected program(): Effect.Effect<number, unknown, SkyRepl> {
    return Effect.gen(this, function* () {
      let filter = {}
      if (this.state !== undefined) {
        const decoded = Schema.decodeUnknownEither(AllocationState)(this.state)
        if (Either.isLeft(decoded)) return yield* new UsageFailure({ message: `--state: expected active or released (got "${this.state}")` })
        filter = { states: [decoded.right] }
      }
      const allocations = yield* listAllocations(filter)
      if (this.json) {
        this.out(toJson(allocations.map((a) => ({ ...a }))))
        return 0
      }
      const now = Date.now()
      this.out(
        table(
          ["ALLOCATION", "STATE", "RUN", "INSTANCE", "AGE"],
          allocations.map((a) => [a.id, colorState(a.state, this.color), a.runId, a.instanceId, ago(a.createdAt, now)]),
          this.color
        )
      )
      return 0
    })
  }
}
