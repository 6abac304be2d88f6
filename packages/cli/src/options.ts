import { parseDuration } from "@skyrepl/core"
import { Option } from "clipanion"
import { type Duration, Effect, Either } from "effect"
import { RepeatedFlag, UsageFailure } from "./errors.ts"

interface OneValueOptions {
  readonly description: string
  readonly required?: boolean
}

/**
 * A flag that takes one value (`--provider ID`), declared as clipanion's `Option.String` declares
 * it, except that giving it more than once is a usage error: clipanion keeps the last value
 * silently, so `repl run -c 'echo A' -c 'echo B'` ran `echo B`, and a script that adds a flag to
 * one it was handed overrode it unseen. The count is taken from what clipanion parsed, so the
 * `--flag=value` form, a short name and `--` (after which nothing is a flag) count as clipanion
 * reads them. A flag meant to be repeated is an `Option.Array`.
 */
export function oneValue(descriptor: string, options: OneValueOptions & { readonly required: true }): string
export function oneValue(descriptor: string, options: OneValueOptions): string | undefined
export function oneValue(descriptor: string, options: OneValueOptions): string | undefined {
  const names = descriptor.split(",")
  return Option.makeCommandOption<string | undefined>({
    definition: (builder) => builder.addOption({ names, arity: 1, description: options.description, required: options.required ?? false }),
    transformer: (_builder, _key, state) => {
      const given = state.options.filter((option) => names.includes(option.name))
      if (given.length > 1) throw new RepeatedFlag({ names: [...new Set(given.map((option) => option.name))] })
      const value: unknown = given[0]?.value
      return typeof value === "string" ? value : undefined
    }
  })
}

/** `--env K=V` flags, repeated; a later key wins, as in `docker run -e`. */
export const parseEnvFlags = (flags: ReadonlyArray<string>): Effect.Effect<Record<string, string>, UsageFailure> =>
  Effect.gen(function* () {
    const env: Record<string, string> = {}
    for (const flag of flags) {
      const eq = flag.indexOf("=")
      const key = eq === -1 ? flag : flag.slice(0, eq)
      if (eq <= 0 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
        return yield* new UsageFailure({ message: `--env expects KEY=VALUE with KEY made of letters, digits and _ (got "${flag}")` })
      }
      env[key] = flag.slice(eq + 1)
    }
    return env
  })

export const parseDurationFlag = (
  flag: string,
  value: string | undefined
): Effect.Effect<Duration.Duration | undefined, UsageFailure> => {
  if (value === undefined) return Effect.succeed(undefined)
  // parseDuration's own reason: `0.4ms` has the form, and is refused for being under a millisecond.
  return Either.match(parseDuration(value), {
    onLeft: (reason) => Effect.fail(new UsageFailure({ message: `${flag}: ${reason}` })),
    onRight: (d) => Effect.succeed(d)
  })
}

export const parseCount = (flag: string, value: string | undefined, fallback: number): Effect.Effect<number, UsageFailure> => {
  if (value === undefined) return Effect.succeed(fallback)
  // Digits only: Number() takes "" and " " for 0, and "1e3" and "0x10" as counts too; and no
  // count past what a number holds exactly (the store would refuse it, after being opened).
  const n = /^[0-9]+$/.test(value) ? Number(value) : Number.NaN
  return Number.isSafeInteger(n)
    ? Effect.succeed(n)
    : Effect.fail(new UsageFailure({ message: `${flag} expects a whole number (got "${value}")` }))
}
