import { describeCause, describeParseError, StoreError, type StoreErrorReason } from "@skyrepl/core"
import type { SqlError } from "@effect/sql/SqlError"
import { Clock, Duration, Effect, Option, ParseResult, Predicate, Schedule, Schema } from "effect"

/** What the drivers attach to their errors: better-sqlite3 and bun:sqlite both set `code`. */
const DriverFailure = Schema.Struct({ code: Schema.String, message: Schema.String })
const decodeDriverFailure = Schema.decodeUnknownOption(DriverFailure)

const reasonOfCode = (code: string): StoreErrorReason => {
  // SQLITE_PROTOCOL is a lost race on the WAL index; SQLite documents it as transient.
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED") || code === "SQLITE_PROTOCOL") return "busy"
  if (code.startsWith("SQLITE_CONSTRAINT")) return "constraint"
  if (code.startsWith("SQLITE_CORRUPT") || code === "SQLITE_NOTADB") return "corrupt"
  if (
    code.startsWith("SQLITE_IOERR") ||
    code.startsWith("SQLITE_CANTOPEN") ||
    code.startsWith("SQLITE_READONLY") ||
    code === "SQLITE_FULL" ||
    code === "SQLITE_PERM"
  ) {
    return "io"
  }
  return "internal"
}

/** The SQLite result code behind a `StoreError`, when a driver gave one. */
export const driverCode = (error: StoreError): string | null =>
  Option.match(decodeDriverFailure(error.cause), { onNone: () => null, onSome: (failure) => failure.code })

/** Classifies whatever a driver threw (a `SqlError`'s cause, or a defect while opening). */
export const fromDriverFailure = (operation: string, cause: unknown): StoreError =>
  Option.match(decodeDriverFailure(cause), {
    onNone: () =>
      new StoreError({
        operation,
        reason: "internal",
        message: `${operation}: ${describeCause(cause)}`,
        cause
      }),
    onSome: (failure) =>
      new StoreError({
        operation,
        reason: reasonOfCode(failure.code),
        message: `${operation}: ${failure.message} (${failure.code})`,
        cause
      })
  })

const isDriverOrDecodeError = <E>(error: E): error is Extract<E, SqlError | ParseResult.ParseError> =>
  Predicate.isTagged(error, "SqlError") || ParseResult.isParseError(error)

/** `E` with its driver and decode failures replaced by `StoreError`. */
export type Mapped<E> = Exclude<E, Extract<E, SqlError | ParseResult.ParseError>> | StoreError

const convert = (operation: string, error: SqlError | ParseResult.ParseError): StoreError =>
  error._tag === "SqlError"
    ? fromDriverFailure(operation, error.cause)
    : new StoreError({
        operation,
        reason: "decode",
        message: `${operation}: a stored row does not match the schema: ${describeParseError(error)}`,
        cause: error
      })

/**
 * Turns driver and decode failures into `StoreError`, leaving every other error (a
 * `StoreError` raised on purpose, an `IllegalTransition`) as it is. `explain` adds what the
 * caller knows and the driver does not (the file's name).
 */
export const mapStoreErrors =
  (operation: string, explain: (error: StoreError) => StoreError = (error) => error) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, Mapped<E>, R> =>
    Effect.catchIf(effect, isDriverOrDecodeError, (error) => Effect.fail(explain(convert(operation, error))))

/**
 * For statements run while opening: better-sqlite3 throws from its unprepared path (a defect to
 * Effect) where the prepared path fails with `SqlError`; both become a classified `StoreError`.
 */
export const openAttempt = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, Mapped<E>, R> =>
  mapStoreErrors("open")(effect).pipe(Effect.catchAllDefect((defect) => Effect.fail(fromDriverFailure("open", defect))))

const isBusy = (error: unknown): boolean => error instanceof StoreError && error.reason === "busy"

/**
 * Waiting inside SQLite (`busy_timeout`) blocks the whole event loop, so it is kept short and
 * longer contention is waited out here, asynchronously. Jitter spreads processes that collided
 * once so they do not collide again in lock-step; the bound keeps a wedged database from
 * hanging a caller forever.
 */
const busySchedule = Schedule.exponential(Duration.millis(2), 2).pipe(
  Schedule.union(Schedule.spaced(Duration.millis(200))),
  Schedule.jitteredWith({ min: 0.5, max: 1.5 }),
  Schedule.upTo(Duration.seconds(60))
)

/**
 * The delays run on a real clock even under a `TestClock`: a test that happens to hit a
 * locked database must not wait for someone to advance virtual time.
 */
const liveClock = Clock.make()

export const retryBusy = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.catchIf(effect, isBusy, () =>
    Effect.retry(effect, { schedule: busySchedule, while: isBusy }).pipe(Effect.withClock(liveClock))
  )
