import { Clock, Duration, Effect, Either, ParseResult, Schema } from "effect"

const pattern = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/

const unitMillis = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const

/**
 * Parses a human duration: `500ms`, `30s`, `5m`, `1h` (a decimal number is allowed: `1.5s`).
 * A bare number is refused on purpose: `--max-duration 30` is ambiguous between seconds and
 * minutes, and guessing wrong either kills a job early or leaves a VM running longer.
 */
export const parseDuration = (text: string): Either.Either<Duration.Duration, string> => {
  const match = pattern.exec(text.trim())
  if (match === null) {
    return Either.left(`invalid duration "${text}": expected a number with a unit, e.g. 500ms, 30s, 5m, 1h`)
  }
  const [, amount, unit] = match as unknown as [string, string, keyof typeof unitMillis]
  return Either.right(Duration.millis(Math.round(Number(amount) * unitMillis[unit])))
}

/** Formats a duration back into the shortest exact unit form `parseDuration` accepts. */
export const formatDuration = (duration: Duration.DurationInput): string => {
  const ms = Duration.toMillis(Duration.decode(duration))
  for (const [unit, size] of [["h", 3_600_000], ["m", 60_000], ["s", 1_000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`
  }
  return `${ms}ms`
}

/** `effect/Schema` for a duration written as text (CLI flags, environment variables). */
export const DurationFromString = Schema.transformOrFail(Schema.String, Schema.DurationFromSelf, {
  strict: true,
  decode: (text, _, ast) =>
    Either.match(parseDuration(text), {
      onLeft: (message) => ParseResult.fail(new ParseResult.Type(ast, text, message)),
      onRight: (d) => ParseResult.succeed(d)
    }),
  encode: (d) => ParseResult.succeed(formatDuration(d))
})

/** A duration in code: anything Effect's `Duration.decode` takes, or the short form `"5m"`. */
export type DurationOption = Duration.DurationInput | `${number}${"ms" | "s" | "m" | "h"}`

/**
 * A duration given in code: anything Effect's `Duration.decode` takes (a `Duration`, a number of
 * milliseconds, `"5 minutes"`) or the short form the CLI and the variables use (`"5m"`).
 * `Left` is the reason, for an `InvalidLaunchOptions` or `InvalidScanOptions` naming the option.
 */
export const decodeDurationOption = (input: unknown): Either.Either<Duration.Duration, string> => {
  if (typeof input === "string" && pattern.test(input.trim())) return parseDuration(input)
  // Effect reads a negative or NaN number as zero, which for a safety margin (the sweep's
  // minAge) means none at all: a parse that failed upstream would reap launches in flight.
  if ((typeof input === "number" && !(input >= 0)) || (typeof input === "bigint" && input < 0n)) {
    return Either.left(`${String(input)} is not a duration (a number of milliseconds must be 0 or more)`)
  }
  const decoded = Duration.decodeUnknown(input)
  if (decoded._tag === "None") {
    return Either.left(`${JSON.stringify(input) ?? String(input)} is not a duration (give e.g. "30s", "5m", Duration.minutes(5) or a number of milliseconds)`)
  }
  return Either.right(decoded.value)
}

const DAY_MS = 86_400_000

/**
 * A sleep of any length. The runtimes' timers take at most 2^31 - 1 ms (about 24.8 days), and
 * Effect's clock never schedules a longer sleep (it would never wake), so a longer one is slept a
 * day at a time, against the Effect clock.
 */
export const sleepLong = (duration: Duration.Duration): Effect.Effect<void> =>
  Effect.flatMap(Clock.currentTimeMillis, (start) => {
    const until = start + Duration.toMillis(duration)
    const step: Effect.Effect<void> = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      now >= until ? Effect.void : Effect.zipRight(Effect.sleep(Duration.millis(Math.min(until - now, DAY_MS))), step)
    )
    return step
  })
