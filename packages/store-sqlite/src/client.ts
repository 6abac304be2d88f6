import * as Reactivity from "@effect/experimental/Reactivity"
import type { SqlClient } from "@effect/sql/SqlClient"
import type { StoreError } from "@skyrepl/core"
import { Effect, type Scope } from "effect"
import { fromDriverFailure, openAttempt, retryBusy } from "./errors.ts"

/**
 * How long SQLite itself waits for a lock before returning SQLITE_BUSY. Its wait blocks the
 * event loop (hub, heartbeats), so it stays short; `retryBusy` waits out the rest without
 * blocking.
 */
export const BUSY_TIMEOUT_MS = 200

type DriverMake = (filename: string) => Effect.Effect<SqlClient, never, Scope.Scope | Reactivity.Reactivity>

/**
 * better-sqlite3 is a Node addon that Bun cannot load, and bun:sqlite exists only in Bun: the
 * driver is imported on demand so neither runtime ever touches the other's.
 */
const loadDriver: Effect.Effect<DriverMake, StoreError> = Effect.tryPromise({
  try: (): Promise<DriverMake> =>
    process.versions.bun !== undefined
      ? import("@effect/sql-sqlite-bun/SqliteClient").then(
          (driver) => (filename) => driver.make({ filename, disableWAL: true })
        )
      : import("@effect/sql-sqlite-node/SqliteClient").then(
          (driver) => (filename) => driver.make({ filename, disableWAL: true })
        ),
  catch: (cause) => fromDriverFailure("load-driver", cause)
})

/**
 * Connection settings, in an order that matters: the busy timeout first, so that switching to
 * WAL (which needs a lock) waits for a process that is creating the same file; then WAL, so
 * readers never block the writer; `synchronous = NORMAL`, which in WAL mode loses nothing on a
 * process crash and only the last commits on power loss (the orphan sweep covers that case);
 * and foreign keys, which SQLite leaves off per connection.
 *
 * These run unprepared: better-sqlite3's statement cache would keep a failed prepare (a lock
 * held by a process creating the file) for minutes. Its unprepared path throws instead, hence
 * the defect handling; every statement here is idempotent, so the whole set is retried.
 */
const configure = (sql: SqlClient): Effect.Effect<void, StoreError> =>
  Effect.gen(function* () {
    yield* sql.unsafe(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`).unprepared
    yield* sql.unsafe("PRAGMA journal_mode = WAL").unprepared
    yield* sql.unsafe("PRAGMA synchronous = NORMAL").unprepared
    yield* sql.unsafe("PRAGMA foreign_keys = ON").unprepared
  }).pipe(openAttempt, retryBusy)

/**
 * One connection to `filename`, closed with the scope. The drivers throw while opening (bad
 * path, not a database), and a throw there would be a defect; it is turned into a
 * `StoreError` so callers see a typed failure.
 */
export const makeClient = (filename: string): Effect.Effect<SqlClient, StoreError, Scope.Scope> =>
  Effect.gen(function* () {
    const make = yield* loadDriver
    const sql = yield* make(filename).pipe(
      Effect.provideServiceEffect(Reactivity.Reactivity, Reactivity.make),
      Effect.catchAllDefect((defect) => Effect.fail(fromDriverFailure("open", defect)))
    )
    yield* configure(sql)
    return sql
  })
