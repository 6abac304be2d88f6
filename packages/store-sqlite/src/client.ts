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
 * How many prepared statements a connection keeps, by SQL text. The store runs about 40
 * distinct statements, over 20 of them in every launch, in the same order each time: a cache
 * smaller than that evicts, least recently used first, exactly the statement needed next, so
 * every statement would be prepared again each time (about 1 ms of a launch). 200 is the Node
 * driver's own default; bun:sqlite keeps 20.
 */
export const STATEMENT_CACHE_SIZE = 200

/**
 * bun:sqlite's cache size is a static of its `Database` class (`MAX_QUERY_CACHE_SIZE`, read
 * at every `query`), so it is raised for the whole process; it is never lowered.
 */
const keepStatementsOnBun = (sqlite: unknown): void => {
  if (typeof sqlite !== "object" || sqlite === null || !("Database" in sqlite)) return
  const database: unknown = sqlite.Database
  if (typeof database !== "function" || !("MAX_QUERY_CACHE_SIZE" in database)) return
  const current = database.MAX_QUERY_CACHE_SIZE
  if (typeof current === "number" && current < STATEMENT_CACHE_SIZE) {
    Object.assign(database, { MAX_QUERY_CACHE_SIZE: STATEMENT_CACHE_SIZE })
  }
}

/** A variable, so that type checking (which never sees Bun's types) leaves the import alone. */
const bunSqlite = "bun:sqlite"

/**
 * better-sqlite3 is a Node addon that Bun cannot load, and bun:sqlite exists only in Bun: the
 * driver is imported on demand so neither runtime ever touches the other's.
 */
const loadDriver: Effect.Effect<DriverMake, StoreError> = Effect.tryPromise({
  try: (): Promise<DriverMake> =>
    process.versions.bun !== undefined
      ? Promise.all([import("@effect/sql-sqlite-bun/SqliteClient"), import(bunSqlite)]).then(([driver, sqlite]) => {
          keepStatementsOnBun(sqlite)
          return (filename) => driver.make({ filename, disableWAL: true })
        })
      : import("@effect/sql-sqlite-node/SqliteClient").then(
          (driver) => (filename) => driver.make({ filename, disableWAL: true, prepareCacheSize: STATEMENT_CACHE_SIZE })
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
