import { Clock, Duration, Effect, Either, Option, ParseResult, Schema } from "effect"
import { boxedMessage, boxedShown } from "./boxed.ts"

const pattern = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/

const unitMillis = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const

/**
 * Whether `ms` is past what a count of milliseconds holds exactly (infinite included): a lease,
 * a dead-man window or a sweep's margin that never ends. The one bound of every duration
 * SkyREPL is given, in a variable, an option or a setting.
 */
export const tooLongToCount = (ms: number): boolean => !(ms <= Number.MAX_SAFE_INTEGER)

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
  const ms = Math.round(Number(amount) * unitMillis[unit])
  // Rounded to 0, `0.4ms` was no time at all: a sweep's margin of none, where some was asked for.
  if (ms === 0 && Number(amount) !== 0) return Either.left(`invalid duration "${text}": under a millisecond, the least SkyREPL counts`)
  // So many digits that the number is infinite (or past what a millisecond count holds exactly):
  // a lease, a dead-man window or a sweep's margin that never ends, taken from a typo.
  if (tooLongToCount(ms)) return Either.left(`invalid duration "${text}": too long to count in milliseconds`)
  return Either.right(Duration.millis(ms))
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

/**
 * A duration in code: a `Duration`, a number of milliseconds, Effect's forms (`"5 minutes"`,
 * `[seconds, nanos]`) or the short form `"5m"`. Not a bigint (see `decodeDurationOption`).
 */
export type DurationOption = Exclude<Duration.DurationInput, bigint> | `${number}${"ms" | "s" | "m" | "h"}`

/** What a duration option may be beyond positive and finite. */
export interface DurationBounds {
  /** Whether 0 is a meaning the option has (a sweep's minAge: no margin at all). Default false. */
  readonly zero?: boolean
}

const shownInput = (input: unknown): string =>
  Duration.isDuration(input) ? `Duration ${Duration.format(input)}` : typeof input === "number" ? String(input) : (JSON.stringify(input) ?? String(input))

/**
 * A duration given in code: anything Effect's `Duration.decode` takes (a `Duration`, a number of
 * milliseconds, `"5 minutes"`) but a bigint, or the short form the CLI and the variables use
 * (`"5m"`). `Left` is the reason, for the entry point's own error naming the option. The one
 * decoder of every duration option (launch's maxDuration, scanOrphans' minAge, the providers'),
 * so each reads the same forms with the same bounds:
 *
 * - A bigint is refused: Effect reads it as nanoseconds where a number is milliseconds, so
 *   `10n` was a 10 ns time limit and the run was killed at once.
 * - A boxed primitive (`new String("5m")`) is named as one.
 * - Infinite is refused: no option means "for ever" (leave maxDuration out for no limit), and an
 *   infinite minAge made every orphan too young, a sweep that quietly did nothing. So is one too
 *   long to count in whole milliseconds, as parseDuration refuses it.
 * - Under a millisecond is refused, 0 too unless `bounds.zero`: SkyREPL counts time in whole
 *   milliseconds (the store, the agent), and a time limit of 0.5 ms ends a run before it starts.
 */
export const decodeDurationOption = (input: unknown, bounds: DurationBounds = {}): Either.Either<Duration.Duration, string> => {
  const boxed = boxedShown(input)
  if (boxed !== null) return Either.left(boxedMessage("", boxed))
  if (typeof input === "bigint") {
    return Either.left(
      `${input}n is a bigint, which Effect reads as nanoseconds (a number is milliseconds); give a number of milliseconds, "30s" or Duration.seconds(30)`
    )
  }
  // Effect reads a negative or NaN number as zero, which for a safety margin (the sweep's
  // minAge) means none at all: a parse that failed upstream would reap launches in flight.
  if (typeof input === "number" && !(input >= 0)) {
    return Either.left(`${String(input)} is not a duration (a number of milliseconds must be 0 or more)`)
  }
  let decoded: Option.Option<Duration.Duration>
  if (typeof input === "string" && pattern.test(input.trim())) {
    const parsed = parseDuration(input)
    if (Either.isLeft(parsed)) return parsed
    decoded = Option.some(parsed.right)
  } else {
    decoded = Duration.decodeUnknown(input)
  }
  if (Option.isNone(decoded)) {
    return Either.left(`${shownInput(input)} is not a duration (give e.g. "30s", "5m", Duration.minutes(5) or a number of milliseconds)`)
  }
  const duration = decoded.value
  if (!Duration.isFinite(duration)) return Either.left(`${shownInput(input)} is not a finite duration`)
  const ms = Duration.toMillis(duration)
  // As parseDuration: past what a millisecond count holds exactly (1e300) is as endless as
  // infinite, a lease or a sweep's margin that never ends.
  if (tooLongToCount(ms)) return Either.left(`${shownInput(input)} is too long to count in milliseconds`)
  if (ms === 0 && bounds.zero === true) return Either.right(duration)
  if (ms < 1) {
    return Either.left(`${shownInput(input)} is ${ms === 0 ? "no time at all" : "under a millisecond"}; give at least 1ms`)
  }
  return Either.right(duration)
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
