import { AllocationState, listAllocations, type SkyRepl } from "@skyrepl/core"
import { Command, Option } from "clipanion"
import { Effect, Either, Schema } from "effect"
import { type Checked, SkyReplCommand } from "../../base-command.ts"
import { UsageFailure } from "../../errors.ts"
import { ago, colorState, table, toJson } from "../../format.ts"
import { oneValue } from "../../options.ts"

export class AllocationListCommand extends SkyReplCommand<ReadonlyArray<AllocationState>> {
  static override paths = [["allocation", "list"]]
  static override usage = Command.Usage({ description: "list allocations: which run holds which instance" })

  state = oneValue("--state", { description: "active or released" })
  json = Option.Boolean("--json", false, { description: "print JSON" })

  protected preflight(): Effect.Effect<Checked<ReadonlyArray<AllocationState>>, UsageFailure> {
    if (this.state === undefined) return Effect.succeed({ flags: [] })
    const decoded = Schema.decodeUnknownEither(AllocationState)(this.state)
    if (Either.isLeft(decoded)) return Effect.fail(new UsageFailure({ message: `--state: expected active or released (got "${this.state}")` }))
    return Effect.succeed({ flags: [decoded.right] })
  }

  protected program(states: ReadonlyArray<AllocationState>): Effect.Effect<number, unknown, SkyRepl> {
    return Effect.gen(this, function* () {
      const allocations = yield* listAllocations(states.length === 0 ? {} : { states })
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
