import { cancel, type SkyRepl } from "@skyrepl/core"
import { Command, Option } from "clipanion"
import { Effect } from "effect"
import { type Checked, nothingToCheck, SkyReplCommand } from "../../base-command.ts"
import { toJson } from "../../format.ts"

const explainOutcome: Record<string, string> = {
  "already-finished": "had already finished",
  cancelled: "cancelled",
  "cancelled-by-owner": "cancelled by the process that started it",
  "terminated-directly": "cancelled; its owner did not answer (gone, or stopped), so its instance was terminated from here"
}

export class RunCancelCommand extends SkyReplCommand {
  static override paths = [["run", "cancel"]]
  static override usage = Command.Usage({
    description: "cancel a run, from any process",
    details: "Idempotent: cancelling a finished run reports its final state and exits 0."
  })

  runId = Option.String({ name: "run-id" })
  json = Option.Boolean("--json", false, { description: "print JSON" })

  protected preflight(): Effect.Effect<Checked<undefined>> {
    return nothingToCheck
  }

  protected program(): Effect.Effect<number, unknown, SkyRepl> {
    return Effect.gen(this, function* () {
      const result = yield* cancel(this.runId)
      if (this.json) this.out(toJson(result))
      else this.out(`run ${result.runId} ${explainOutcome[result.outcome] ?? result.outcome} (state: ${result.state})\n`)
      return 0
    })
  }
}
