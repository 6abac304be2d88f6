import { checkProviderConfiguration, defaultMinAge, formatDuration, InstanceName, scanOrphans, type SkyRepl, type SkyReplSettings } from "@skyrepl/core"
import { Command, Option } from "clipanion"
import { type Duration, Effect, Either, Schema, type Scope } from "effect"
import { type Checked, SkyReplCommand } from "../base-command.ts"
import { UsageFailure } from "../errors.ts"
import { ago, table, toJson } from "../format.ts"
import { printable } from "../printable.ts"
import { oneValue, parseDurationFlag } from "../options.ts"
import { buildProvider } from "../runtime.ts"

interface OrphansFlags {
  /** Each once, in the order first given (`--provider aws --provider aws` asks aws once). */
  readonly providers: ReadonlyArray<string>
  readonly minAge: Duration.Duration | 0 | undefined
}

export class OrphansCommand extends SkyReplCommand<OrphansFlags> {
  static override paths = [["orphans"]]
  static override usage = Command.Usage({
    description: "find (and with --reap, terminate) SkyREPL instances nobody owns",
    details: `
      Lists every SkyREPL instance the providers hold that the store does not track, or whose owner stopped renewing its lease, or that the store thinks is terminated. It asks the providers directly, so it works with the state database deleted.

      Nothing is terminated without \`--reap\`; even then instances younger than \`--min-age\` (default ${formatDuration(defaultMinAge)}) and names given with \`--keep\` are left alone.
    `,
    examples: [
      ["List orphans", "$0 orphans"],
      ["Terminate all of them now", "$0 orphans --reap --min-age 0s"]
    ]
  })

  provider = Option.Array("--provider", [], { description: "only this provider (repeatable)" })
  reap = Option.Boolean("--reap", false, { description: "terminate what is found" })
  minAge = oneValue("--min-age", { description: `leave younger instances alone (default ${formatDuration(defaultMinAge)}; 0 for none)` })
  keep = Option.Array("--keep", [], { description: "never reap this instance name (repeatable)" })
  own = Option.Boolean("--own", false, { description: "only instances named for this state home's control plane" })
  json = Option.Boolean("--json", false, { description: "print JSON" })

  protected preflight(settings: SkyReplSettings): Effect.Effect<Checked<OrphansFlags>, unknown, Scope.Scope> {
    return Effect.gen(this, function* () {
      const ids = [...new Set(this.provider)]
      // A provider named here with malformed settings is a usage error, refused before the store
      // is opened (which would reap); unnamed, the sweep skips it and goes on with the others.
      const providers = yield* Effect.forEach(ids, (id) => Effect.tap(buildProvider(settings, id), checkProviderConfiguration))
      // Providers list only instances named as SkyREPL names them, so any other `--keep` (a run id,
      // an instance's id, a typo) could never match: with --reap, the instance meant was reaped.
      for (const name of this.keep) {
        if (Either.isLeft(Schema.decodeUnknownEither(InstanceName)(name))) {
          return yield* new UsageFailure({
            message: `--keep: "${name}" is not an instance name (repl-CONTROL-MANIFEST-INSTANCE, as repl instance list and repl orphans show them)`
          })
        }
      }
      // `0` alone is the natural way to say "no minimum"; every other value needs a unit.
      const minAge = this.minAge === "0" ? 0 : yield* parseDurationFlag("--min-age", this.minAge)
      return { flags: { providers: ids, minAge }, providers }
    })
  }

  protected program({ providers, minAge }: OrphansFlags): Effect.Effect<number, unknown, SkyRepl> {
    return Effect.gen(this, function* () {
      const report = yield* scanOrphans({
        reap: this.reap,
        ...(providers.length === 0 ? {} : { providers }),
        ...(minAge === undefined ? {} : { minAge }),
        keep: this.keep,
        ownOnly: this.own
      })
      for (const skipped of report.skipped) {
        // A provider not available here is a warning, worded as the engine's warnings are (and
        // as `snapshot list` prints the same skip); one that failed makes the sweep incomplete
        // and the exit 1, so it is worded as an error.
        this.err(`repl: ${skipped.failed === true ? "could not sweep" : "warn: skipped"} provider ${skipped.provider}: ${printable(skipped.message)}\n`)
      }
      if (this.json) {
        this.out(toJson(report))
      } else if (report.orphans.length === 0) {
        this.out(`no orphans (${report.resources} SkyREPL instance(s) seen on ${report.providers.join(", ")})\n`)
      } else {
        const now = Date.now()
        this.out(
          table(
            ["NAME", "PROVIDER", "REASON", "AGE", "ACTION"],
            report.orphans.map((o) => [o.name, o.provider, o.reason, o.ageMs === null ? "-" : ago(now - o.ageMs, now), o.error === null ? o.action : `${o.action}: ${o.error}`]),
            this.color
          )
        )
      }
      // A provider that could not be listed leaves the sweep incomplete: a script must see it.
      return report.orphans.some((o) => o.action === "reap-failed") || report.skipped.some((s) => s.failed === true) ? 1 : 0
    })
  }
}
