import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Exit, FiberRef, type Scope } from "effect"

type Rows = ReadonlyArray<unknown>

/**
 * The store's connection, taken from its `SqlClient` once and held for the store's life.
 *
 * Through the client, every statement acquires the connection, opens a scope and a span and
 * compiles its text: about 20 µs more than the driver's own call, which for a state
 * transition's one UPDATE … RETURNING is itself about 24 µs (B5, bench/results.md). The client
 * is made for the store alone (makeScoped), so holding its connection takes it from no one.
 * Statements therefore have no spans of their own.
 *
 * What acquiring per statement gave is kept: a statement outside a transaction waits while
 * another fiber's transaction is open, so it neither sees that transaction's uncommitted writes
 * nor goes down with its rollback; statements of the fiber in the transaction run at once.
 */
export interface HeldConnection {
  readonly query: (text: string, params?: Rows) => Effect.Effect<Rows, SqlError>
  /** Not kept prepared: for statements run once (schema changes, pragmas), see client.ts. */
  readonly unprepared: (text: string, params?: Rows) => Effect.Effect<Rows, SqlError>
  /**
   * `body` in a transaction that takes the write lock at BEGIN. A deferred transaction that
   * reads first and writes later can find at the write that another process committed since
   * its read; SQLite then fails it (SQLITE_BUSY_SNAPSHOT) with no wait that could help. Taking
   * the lock up front makes read-modify-write safe and leaves any waiting to the busy handling.
   * (`sql.withTransaction` issues a plain BEGIN, and answers a failed BEGIN or COMMIT with a
   * defect.) Called inside a transaction, `body` joins it.
   */
  readonly writeTransaction: <A, E, R>(body: Effect.Effect<A, E, R>) => Effect.Effect<A, E | SqlError, R>
}

export const hold = (sql: SqlClient): Effect.Effect<HeldConnection, SqlError, Scope.Scope> =>
  Effect.gen(function* () {
    // Held until the scope closes: from here on the client itself would wait for it forever.
    const connection = yield* sql.reserve
    const transaction = yield* Effect.makeSemaphore(1)
    /** Whether the current fiber runs inside this connection's open transaction. */
    const inside = FiberRef.unsafeMake(false)

    const outsideTransactions = <A>(statement: Effect.Effect<A, SqlError>): Effect.Effect<A, SqlError> =>
      Effect.flatMap(FiberRef.get(inside), (joined) => (joined ? statement : transaction.withPermits(1)(statement)))

    const writeTransaction: HeldConnection["writeTransaction"] = (body) =>
      Effect.flatMap(FiberRef.get(inside), (joined) =>
        joined
          ? body
          : transaction.withPermits(1)(
              Effect.uninterruptibleMask((restore) =>
                Effect.gen(function* () {
                  yield* connection.execute("BEGIN IMMEDIATE", [], undefined)
                  const result = yield* Effect.exit(restore(Effect.locally(body, inside, true)))
                  if (Exit.isSuccess(result)) {
                    const committed = yield* Effect.exit(connection.execute("COMMIT", [], undefined))
                    if (Exit.isSuccess(committed)) return result.value
                    yield* Effect.ignore(connection.execute("ROLLBACK", [], undefined))
                    return yield* Effect.failCause(committed.cause)
                  }
                  yield* Effect.ignore(connection.execute("ROLLBACK", [], undefined))
                  return yield* Effect.failCause(result.cause)
                })
              )
            )
      )

    return {
      query: (text, params = []) => outsideTransactions(connection.execute(text, params, undefined)),
      unprepared: (text, params = []) => outsideTransactions(connection.executeUnprepared(text, params, undefined)),
      writeTransaction
    }
  })
