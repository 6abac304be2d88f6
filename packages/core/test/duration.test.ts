import { Clock, Duration, Effect, Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { DurationFromString, formatDuration, parseDuration, sleepLong } from "../src/duration.ts"

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

  it("decodes through effect/Schema with a readable message", () => {
    const result = Schema.decodeUnknownEither(DurationFromString)("10 years")
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) expect(String(result.left.message)).toContain("expected a number with a unit")
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
