import { checkProviderConfiguration, launch, type LaunchProgress, type RunResult, type SkyReplSettings, type UnknownProvider, validateLaunchOptions } from "@skyrepl/core"
import { Command, Option } from "clipanion"
import type { SkyRepl } from "@skyrepl/core"
import { Duration, Effect, type Scope } from "effect"
import { constants } from "node:os"
import { type Checked, INTERRUPTED, reportFailure, SkyReplCommand } from "../base-command.ts"
import { dim, useColor } from "../format.ts"
import { UsageFailure } from "../errors.ts"
import { oneValue, parseDurationFlag, parseEnvFlags } from "../options.ts"
import { buildProvider, checkSpec } from "../runtime.ts"
import { stderr as stderrOutput } from "../stdio.ts"
import { printOutput } from "../json-output.ts"
import { printable } from "../printable.ts"

/** `timeout(1)` uses 124 for a command that ran out of time; scripts already know it. */
const TIMED_OUT = 124

/**
 * A signal's number, as this machine numbers it (a local sandbox's command ran here); a name the
 * table lacks (a signal of another system, reported by a remote agent) counts as 0, so 128.
 */
const signalNumber = (name: string): number => (constants.signals as Readonly<Record<string, number | undefined>>)[name] ?? 0

export const exitStatusOf = (result: RunResult): number => {
  // A run stopped by its time limit or a cancel says so whatever the command's own status: one
  // that traps SIGTERM and exits 0 did not succeed (timeout(1) gives 124 the same way).
  switch (result.state) {
    case "cancelled":
      return INTERRUPTED
    case "timed_out":
      return TIMED_OUT
    case "succeeded":
      return result.exitCode ?? 0
    case "failed":
      // A command that exited 0 in a run that still failed (its output was lost) is no success.
      if (result.exitCode !== null) return result.exitCode === 0 ? 1 : result.exitCode
      return result.signal !== null ? 128 + signalNumber(result.signal) : 1
  }
}

/** What is said of an instance whose termination was not confirmed. */
const unconfirmed = "ending the instance was not confirmed: the next repl command ends it (repl orphans shows it)"

/** What `repl run` and `repl run attach` say on stderr of a run that did not end by itself. */
export const endLine = (result: RunResult): string | null => {
  if (result.state === "timed_out") return `repl: run ${result.runId} exceeded --max-duration and was stopped\n`
  if (result.state === "failed" && (result.exitCode === null || result.exitCode === 0) && result.error !== null) {
    // The error quotes what the agent or the provider said (a workdir as given, say): shown as
    // printable text, as every line of repl's own is.
    return `repl: run ${result.runId} failed: ${printable(result.error)}\n`
  }
  if (result.state === "cancelled") return `repl: run ${result.runId} was cancelled\n`
  return null
}

interface RunFlags {
  readonly env: Record<string, string>
  readonly maxDuration: Duration.Duration | undefined
}

export class RunCommand extends SkyReplCommand<RunFlags> {
  static override paths = [["run"]]

  static override usage = Command.Usage({
    description: "run a command on a new instance",
    details: `
      Starts an instance on the provider, runs the command with \`/bin/sh -c\`, streams its output, and exits with the command's exit status. The instance is terminated when the command ends, when it runs out of time (exit 124), or on Ctrl-C (exit 130).

      With \`--json\`, stdout carries JSON Lines: one \`output\` object per chunk (data as UTF-8 text) and a final \`exit\` object, or an \`error\` object when the command failed or was interrupted before the run ended.
    `,
    examples: [
      ["Run on the local sandbox", "$0 run -c 'echo hello'"],
      ["Pass environment and a time limit", "$0 run -c 'echo $FOO' --env FOO=bar --max-duration 30s"]
    ]
  })

  command = oneValue("-c,--command", { required: true, description: "the command to run (/bin/sh -c)" })
  provider = oneValue("--provider", { description: "provider id (default: local, or $SKYREPL_PROVIDER)" })
  spec = oneValue("--spec", { description: "provider-specific instance spec" })
  env = Option.Array("--env", [], { description: "KEY=VALUE for the command's environment (repeatable)" })
  region = oneValue("--region", { description: "region, for providers that have them (aws)" })
  spot = Option.Boolean("--spot", false, { description: "a spot instance, for providers that have them (aws)" })
  maxDuration = oneValue("--max-duration", { description: "kill the run after this long: 500ms, 30s, 5m, 1h" })
  json = Option.Boolean("--json", false, { description: "JSON Lines on stdout instead of raw output" })
  progress = Option.Boolean("--progress", { description: "show start-up progress on stderr (default: when stderr is a terminal)" })

  /** Said on Ctrl-C: what became of the instance, as far as the launch's progress told. */
  protected override interrupted = "interrupted"

  protected preflight(settings: SkyReplSettings): Effect.Effect<Checked<RunFlags>, unknown, Scope.Scope> {
    return Effect.gen(this, function* () {
      const env = yield* parseEnvFlags(this.env)
      const maxDuration = yield* parseDurationFlag("--max-duration", this.maxDuration)
      // Refused by the launch too, but there under the SDK's option name.
      if (maxDuration !== undefined && !Duration.greaterThan(maxDuration, Duration.zero)) {
        return yield* new UsageFailure({ message: `--max-duration must be longer than 0 (got "${this.maxDuration}")` })
      }
      // The launch's own checks (an empty command), before the store is opened.
      yield* validateLaunchOptions({ command: this.command, env, ...(maxDuration === undefined ? {} : { maxDuration }) })
      const provider = yield* buildProvider(settings, this.provider ?? settings.defaultProvider).pipe(
        // The default came from the environment: the variable is what to fix.
        Effect.catchTag("UnknownProvider", (error): Effect.Effect<never, UnknownProvider | UsageFailure> =>
          this.provider === undefined && process.env["SKYREPL_PROVIDER"] !== undefined
            ? Effect.fail(new UsageFailure({ message: `SKYREPL_PROVIDER: ${error.message}` }))
            : Effect.fail(error)
        )
      )
      yield* checkProviderConfiguration(provider)
      if (this.region !== undefined && !provider.capabilities.regions) {
        return yield* new UsageFailure({ message: `--region: provider "${provider.id}" has no regions` })
      }
      if (this.spot && !provider.capabilities.spot) {
        return yield* new UsageFailure({ message: `--spot: provider "${provider.id}" has no spot instances` })
      }
      yield* checkSpec(provider, this.spec, { ...(this.region === undefined ? {} : { region: this.region }), ...(this.spot ? { spot: true } : {}) })
      return { flags: { env, maxDuration }, providers: [provider] }
    })
  }

  protected program(checked: RunFlags, settings: SkyReplSettings): Effect.Effect<number, unknown, SkyRepl | Scope.Scope> {
    return Effect.gen(this, function* () {
      const stdout = { write: (data: string | Uint8Array) => this.out(data) }
      const stderr = { write: (data: string | Uint8Array) => this.err(data) }
      const showProgress = this.progress ?? (stderrOutput.isTTY && !this.json)
      const color = useColor(stderrOutput)
      // An instance is on its way from "spawning" on; only "terminated" confirms its end (a
      // termination that failed was logged, and leaves the instance to the next command's reaper).
      let ended = false
      const onProgress = (event: LaunchProgress) => {
        if (event.phase === "terminated") {
          ended = true
          this.interrupted = "interrupted; the instance was terminated"
        } else if (event.phase === "spawning") this.interrupted = `interrupted; ${unconfirmed}`
        if (!showProgress || event.phase === "terminated" || event.phase === "terminating") return
        const seconds = (event.elapsedMs / 1000).toFixed(2)
        stderr.write(dim(`repl: ${event.phase} ${event.instance} (${seconds}s)`, color) + "\n")
      }
      // The launch's scope is closed here, not by the command's, so that how the instance ended
      // can still decide the exit status.
      const { status, instance } = yield* Effect.scoped(
        Effect.gen(this, function* () {
          const run = yield* launch({
            command: this.command,
            provider: this.provider ?? settings.defaultProvider,
            ...(this.spec === undefined ? {} : { spec: this.spec }),
            env: checked.env,
            ...(this.region === undefined ? {} : { region: this.region }),
            ...(this.spot ? { spot: true } : {}),
            ...(checked.maxDuration === undefined ? {} : { maxDuration: checked.maxDuration }),
            onProgress
          })
          yield* printOutput(run.output, { json: this.json, runId: run.id, stdout, stderr, room: this.outputRoom })
          const result = yield* run.result
          if (this.json) {
            stdout.write(JSON.stringify({ type: "exit", instance: run.instance.name, ...result }) + "\n")
          } else {
            const line = endLine(result)
            if (line !== null) stderr.write(line)
          }
          return { status: exitStatusOf(result), instance: run.instance.name }
        })
      )
      if (ended) return status
      // The command's status says nothing of an instance that may still be billing: a script
      // must see that too (a status that is already a failure is kept).
      return reportFailure(`the run ended, but ${instance} may still be running: ${unconfirmed}`, status === 0 ? 1 : status, this.json, (data) =>
        this.out(data)
      )
    })
  }
}
