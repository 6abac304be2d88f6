import { listRuns, type RunState, RunState as RunStateSchema, type SkyRepl } from "@skyrepl/core"
import { Command, Option } from "clipanion"
import { Effect, Either, Schema } from "effect"
import { type Checked, SkyReplCommand } from "../../base-command.ts"
import { UsageFailure } from "../../errors.ts"
import { ago, colorState, table, truncate, toJson } from "../../format.ts"
import { oneValue, parseCount } from "../../options.ts"

interface RunListFlags {
  readonly limit: number
  readonly states: ReadonlyArray<RunState>
}

export class RunListCommand extends SkyReplCommand<RunListFlags> {
  static override paths = [["run", "list"]]
  static override usage = Command.Usage({ description: "list runs, newest first" })

  limit = oneValue("--limit", { description: "how many runs to show (default 20; 0 for all)" })
  state = Option.Array("--state", [], { description: "only runs in this state (repeatable)" })
  json = Option.Boolean("--json", false, { description: "print JSON" })

  protected preflight(): Effect.Effect<Checked<RunListFlags>, UsageFailure> {
    return Effect.gen(this, function* () {
      const limit = yield* parseCount("--limit", this.limit, 20)
      const states: Array<RunState> = []
      for (const s of this.state) {
        const decoded = Schema.decodeUnknownEither(RunStateSchema)(s)
        if (Either.isLeft(decoded)) {
          return yield* new UsageFailure({ message: `--state: unknown run state "${s}" (one of ${RunStateSchema.literals.join(", ")})` })
        }
        states.push(decoded.right)
      }
      return { flags: { limit, states } }
    })
  }

  protected program({ limit, states }: RunListFlags): Effect.Effect<number, unknown, SkyRepl> {
    return Effect.gen(this, function* () {
      const runs = yield* listRuns({ ...(limit === 0 ? {} : { limit }), ...(states.length === 0 ? {} : { states }) })
      if (this.json) {
        this.out(toJson(runs.map((r) => ({ ...r }))))
        return 0
      }
      const now = Date.now()
      this.out(
        table(
          ["RUN", "STATE", "EXIT", "PROVIDER", "STARTED", "COMMAND"],
          runs.map((r) => [r.id, colorState(r.state, this.color), r.exitCode === null ? (r.signal ?? "-") : String(r.exitCode), r.provider, ago(r.createdAt, now), truncate(r.command, 60)]),
          this.color
        )
      )
      return 0
    })
  }
}
