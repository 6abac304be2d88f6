import { Clock, Duration, Effect, Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { decodeDurationOption, DurationFromString, formatDuration, parseDuration, sleepLong } from "../src/duration.ts"

describe("durations", () => {
  it.each([
    ["500ms", 500],
    ["30s", 30_000],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["1.5s", 1_500]
  ])("parses %s", (text, ms) => {
    const parsed = parseDuration(text)
    expect(Either.isRight(parsed) && Duration.toMillis(parsed.right)).toBe(ms)
  })

  it.each(["30", "5 minutes", "-1s", "", "1d", "ms"])("refuses %j", (text) => {
    expect(Either.isLeft(parseDuration(text))).toBe(true)
  })

  it("formats back to a form it parses", () => {
    for (const ms of [1, 500, 1_000, 90_000, 3_600_000]) {
      const text = formatDuration(Duration.millis(ms))
      const back = parseDuration(text)
      expect(Either.isRight(back) && Duration.toMillis(back.right)).toBe(ms)
    }
  })

  it("refuses an amount under a millisecond, which rounded to no time at all, but takes 0 itself", () => {
    expect(parseDuration("0.4ms")).toEqual(Either.left('invalid duration "0.4ms": under a millisecond, the least SkyREPL counts'))
    expect(Either.map(parseDuration("0ms"), Duration.toMillis)).toEqual(Either.right(0))
    expect(Either.map(parseDuration("0.5ms"), Duration.toMillis)).toEqual(Either.right(1))
  })

  it("refuses an amount too long to count in whole milliseconds, which was an infinite duration", () => {
    // A variable's typo (SKYREPL_LEASE_TTL, SKYREPL_AWS_MAX_LIFETIME) became a lease or a life that never ends.
    const endless = `${"9".repeat(400)}h`
    expect(parseDuration(endless)).toEqual(Either.left(`invalid duration "${endless}": too long to count in milliseconds`))
    expect(Either.isLeft(parseDuration("9007199254741s"))).toBe(true)
    expect(Either.map(parseDuration("8760h"), Duration.toMillis)).toEqual(Either.right(31_536_000_000))
  })

  it("decodes through effect/Schema with a readable message", () => {
    const result = Schema.decodeUnknownEither(DurationFromString)("10 years")
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) expect(String(result.left.message)).toContain("expected a number with a unit")
  })
})

describe("decodeDurationOption", () => {
  const decoded = (input: unknown, zero = false) =>
    Either.match(decodeDurationOption(input, { zero }), { onLeft: (reason) => `refused: ${reason}`, onRight: Duration.toMillis })

  it("reads a number as milliseconds, and Effect's forms and the CLI's as they say", () => {
    expect([decoded(1500), decoded("5m"), decoded("2 seconds"), decoded(Duration.minutes(1)), decoded([1, 0]), decoded(0, true)]).toEqual([1500, 300_000, 2000, 60_000, 1000, 0])
  })

  it("refuses a bigint, which Effect reads as nanoseconds where a number is milliseconds", () => {
    // Taken as Effect takes it, 10n was a 10 ns time limit: the run was killed at once.
    expect(decoded(10n)).toBe('refused: 10n is a bigint, which Effect reads as nanoseconds (a number is milliseconds); give a number of milliseconds, "30s" or Duration.seconds(30)')
    expect(decoded(10_000_000_000n)).toMatch(/^refused: 10000000000n is a bigint/)
  })

  it("refuses under a millisecond, 0 unless the option takes it, and infinite", () => {
    expect([decoded(0.5), decoded(Duration.nanos(10n)), decoded("1 nano"), decoded(0), decoded(Duration.zero), decoded(Number.POSITIVE_INFINITY, true), decoded(Duration.infinity, true)]).toEqual([
      "refused: 0.5 is under a millisecond; give at least 1ms",
      "refused: Duration 10ns is under a millisecond; give at least 1ms",
      'refused: "1 nano" is under a millisecond; give at least 1ms',
      "refused: 0 is no time at all; give at least 1ms",
      "refused: Duration 0 is no time at all; give at least 1ms",
      "refused: Infinity is not a finite duration",
      "refused: Duration Infinity is not a finite duration"
    ])
    expect(decoded(0.5, true)).toBe("refused: 0.5 is under a millisecond; give at least 1ms")
  })

  it("refuses a finite duration too long to count in whole milliseconds, as parseDuration does", () => {
    // "9007199254741s" was refused, 9007199254741000 ms given as a number was not: a minAge of
    // 1e300 made every orphan too young, the sweep that quietly did nothing an infinite one was.
    expect([decoded(1e300, true), decoded(Number.MAX_VALUE), decoded(Duration.days(1e15))]).toEqual([
      "refused: 1e+300 is too long to count in milliseconds",
      "refused: 1.7976931348623157e+308 is too long to count in milliseconds",
      expect.stringMatching(/^refused: Duration .* is too long to count in milliseconds$/)
    ])
    expect(Either.isLeft(decodeDurationOption(9_007_199_254_741_000))).toBe(Either.isLeft(parseDuration("9007199254741s")))
    expect(decoded(Number.MAX_SAFE_INTEGER)).toBe(Number.MAX_SAFE_INTEGER)
  })

  it("names a boxed primitive as one, rather than showing its value as if it were the primitive", () => {
    // Each was '5 is not a duration' and '"5m" is not a duration'.
    expect([decoded(new Number(5)), decoded(new String("5m"))]).toEqual([
      "refused: new Number(5) is an object, not a number; give the value itself",
      'refused: new String("5m") is an object, not a string; give the value itself'
    ])
  })
})

describe("sleepLong", () => {
  it("asks the clock for no sleep longer than a day (a live sleep past 2^31 - 1 ms never wakes), and sleeps as long as asked", () => {
    let now = 0
    const asked: Array<number> = []
    // A clock that records each sleep and lets its time pass at once.
    const clock: Clock.Clock = {
      [Clock.ClockTypeId]: Clock.ClockTypeId,
      unsafeCurrentTimeMillis: () => now,
      currentTimeMillis: Effect.sync(() => now),
      unsafeCurrentTimeNanos: () => BigInt(now) * 1_000_000n,
      currentTimeNanos: Effect.sync(() => BigInt(now) * 1_000_000n),
      sleep: (duration) =>
        Effect.sync(() => {
          asked.push(Duration.toMillis(duration))
          now += Duration.toMillis(duration)
        })
    }
    Effect.runSync(sleepLong(Duration.days(30)).pipe(Effect.withClock(clock)))
    expect(Math.max(...asked)).toBe(86_400_000)
    expect(now).toBe(30 * 86_400_000)
    asked.length = 0
    Effect.runSync(sleepLong(Duration.seconds(5)).pipe(Effect.withClock(clock)))
    expect(asked).toEqual([5_000])
  })
})
