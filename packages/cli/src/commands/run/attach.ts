import { attach, getRun, runResultOf, type SkyRepl } from "@skyrepl/core"
import { Command, Option } from "clipanion"
import { Effect } from "effect"
import { type Checked, SkyReplCommand } from "../../base-command.ts"
import type { UsageFailure } from "../../errors.ts"
import { oneValue, parseCount } from "../../options.ts"
import { endLine, exitStatusOf } from "../run.ts"
import { printOutput } from "../../json-output.ts"

interface AttachFlags {
  readonly stdoutFrom: number
  readonly stderrFrom: number
}

export class RunAttachCommand extends SkyReplCommand<AttachFlags> {
  static override paths = [["run", "attach"]]
  static override usage = Command.Usage({
    description: "replay a run's output and follow it live",
    details: `
      Prints the run's output from the start (or from the given byte offsets), then follows it until the run ends, and exits with the run's exit status. Detaching (Ctrl-C) leaves the run going.

      With \`--json\`, stdout carries JSON Lines as \`repl run --json\` gives them: \`output\` objects, then an \`exit\` object once the run has ended (none with \`--no-follow\` while it goes on), or an \`error\` object.
    `
  })

  runId = Option.String({ name: "run-id" })
  fromStdout = oneValue("--from-stdout", { description: "skip this many bytes of stdout" })
  fromStderr = oneValue("--from-stderr", { description: "skip this many bytes of stderr" })
  noFollow = Option.Boolean("--no-follow", false, { description: "print what is there now and exit" })
  json = Option.Boolean("--json", false, { description: "JSON Lines: one object per chunk with its offset" })

  // Detaching stops the reading only: the run is its owner's.
  protected override interrupted = "detached; the run goes on (repl run cancel ends it)"

  protected preflight(): Effect.Effect<Checked<AttachFlags>, UsageFailure> {
    return Effect.gen(this, function* () {
      const stdoutFrom = yield* parseCount("--from-stdout", this.fromStdout, 0)
      const stderrFrom = yield* parseCount("--from-stderr", this.fromStderr, 0)
      return { flags: { stdoutFrom, stderrFrom } }
    })
  }

  protected program({ stdoutFrom, stderrFrom }: AttachFlags): Effect.Effect<number, unknown, SkyRepl> {
    return Effect.gen(this, function* () {
      const stdout = { write: (data: string | Uint8Array) => this.out(data) }
      const stderr = { write: (data: string | Uint8Array) => this.err(data) }
      yield* printOutput(attach(this.runId, { from: { stdout: stdoutFrom, stderr: stderrFrom }, follow: !this.noFollow }), {
        json: this.json,
        runId: this.runId,
        stdout,
        stderr,
        room: this.outputRoom
      })
      const run = yield* getRun(this.runId)
      if (this.noFollow && !["succeeded", "failed", "cancelled", "timed_out"].includes(run.state)) return 0
      const result = runResultOf(run)
      if (this.json) {
        stdout.write(JSON.stringify({ type: "exit", ...result }) + "\n")
      } else {
        const line = endLine(result)
        if (line !== null) stderr.write(line)
      }
      return exitStatusOf(result)
    })
  }
}
