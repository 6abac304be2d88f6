import { DurationFromString } from "@skyrepl/core"
import { type Duration, Effect, Either, Schema } from "effect"
import { UsageFailure } from "./errors.ts"

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
  return Either.match(Schema.decodeUnknownEither(DurationFromString)(value), {
    onLeft: () => Effect.fail(new UsageFailure({ message: `${flag}: invalid duration "${value}" (use e.g. 500ms, 30s, 5m, 1h)` })),
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
