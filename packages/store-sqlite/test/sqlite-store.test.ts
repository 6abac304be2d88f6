import { afterAll, describe, expect, it } from "@effect/vitest"
import type { SqlClient } from "@effect/sql/SqlClient"
import { Allocation, Instance, type InstanceFilter, liveInstanceStates, Store, StoreError, type StoreService } from "@skyrepl/core"
import { launchRecords } from "@skyrepl/core/testing"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { Deferred, Effect, Fiber, Option, Schema } from "effect"
import { spawnSync } from "node:child_process"
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { deflateSync, gzipSync } from "node:zlib"
import { BUSY_TIMEOUT_MS, makeClient } from "../src/client.ts"
import { type HeldConnection, hold } from "../src/connection.ts"
import { instancesQuery } from "../src/instances-query.ts"
import { latestVersion } from "../src/migrations.ts"
import { RecentChunks } from "../src/output-encoding.ts"
import { OpenReport, type WorkPlan, WorkReport } from "./fixtures/protocol.ts"
import { lastLine, runTogether } from "./processes.ts"

const root = mkdtempSync(join(tmpdir(), "skyrepl-sqlite-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))

const freshHome = () => mkdtempSync(join(root, "home-"))

const T0 = 1_800_000_000_000

const launchOf = (store: StoreService, createdAt = T0) =>
  launchRecords(store.controlId, { controllerId: "controller", spec: "local", command: "true", env: {}, createdAt })

const createLaunch = (store: StoreService, createdAt = T0) =>
  Effect.gen(function* () {
    const launch = launchOf(store, createdAt)
    yield* store.createLaunch(launch.manifest, launch.instance, launch.run)
    return launch
  })

/** Runs `body` with the store of `filename` open, and closes it afterwards. */
const withStore = <A, E>(filename: string, body: (store: StoreService) => Effect.Effect<A, E>) =>
  Effect.flatMap(Store, body).pipe(Effect.provide(SqliteStore.layer({ filename })))

/** A second, raw connection to the same file: what another program (or a user) could do. */
const withRaw = <A, E>(filename: string, body: (sql: SqlClient) => Effect.Effect<A, E>) =>
  Effect.scoped(Effect.flatMap(makeClient(filename), body))

const SqliteFailure = Schema.Struct({ code: Schema.String })
const failureCode = (error: unknown): Option.Option<string> =>
  Option.map(
    Schema.decodeUnknownOption(Schema.Struct({ cause: SqliteFailure }))(error),
    (e) => e.cause.code
  )

const storeErrorOf = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const error = yield* Effect.flip(effect)
    expect(error).toBeInstanceOf(StoreError)
    return error instanceof StoreError ? Option.some(error) : Option.none()
  })

const literal = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/**
 * Read-only in a way root respects, as the tests run as root: mode bits do not stop root, an
 * immutable inode (chattr +i) does. Where it cannot be set (no chattr, a file system without
 * the flag, no CAP_LINUX_IMMUTABLE) the tests that need it are skipped.
 */
const setImmutable = (path: string, on: boolean): boolean => spawnSync("chattr", [on ? "+i" : "-i", path]).status === 0
const canMakeImmutable = (() => {
  const probe = mkdtempSync(join(root, "probe-"))
  return setImmutable(probe, true) && setImmutable(probe, false)
})()
const immutableWhileScoped = (path: string) =>
  Effect.acquireRelease(
    Effect.sync(() => expect(setImmutable(path, true)).toBe(true)),
    () => Effect.sync(() => setImmutable(path, false))
  )

/** A small tmpfs stands for a full disk; mounting needs root (CAP_SYS_ADMIN), else it is skipped. */
const canMountTmpfs = (() => {
  const probe = mkdtempSync(join(root, "probe-"))
  const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=40k", "tmpfs", probe]).status === 0
  return mounted && spawnSync("umount", [probe]).status === 0
})()

const reasonOf = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.map(storeErrorOf(effect), Option.map((e) => e.reason))

describe("SqliteStore on SQLite", () => {
  it.effect("uses the driver of the runtime it runs on", () =>
    withRaw(join(freshHome(), "state.db"), (sql) =>
      Effect.sync(() => {
        const bun = Symbol.for("@effect/sql-sqlite-bun/SqliteClient") in sql
        const node = Symbol.for("@effect/sql-sqlite-node/SqliteClient") in sql
        expect({ bun, node }).toEqual({ bun: process.versions.bun !== undefined, node: process.versions.bun === undefined })
      })
    )
  )

  it.effect("opens in WAL mode with a busy timeout and foreign keys on", () =>
    Effect.gen(function* () {
      const filename = join(freshHome(), "state.db")
      yield* withStore(filename, () => Effect.void)
      const settings = yield* withRaw(filename, (sql) =>
        Effect.all({
          journal: sql.unsafe("PRAGMA journal_mode"),
          timeout: sql.unsafe("PRAGMA busy_timeout"),
          foreignKeys: sql.unsafe("PRAGMA foreign_keys"),
          version: sql.unsafe("PRAGMA user_version")
        })
      )
      expect(settings.journal).toEqual([{ journal_mode: "wal" }])
      expect(settings.timeout).toEqual([{ timeout: BUSY_TIMEOUT_MS }])
      expect(settings.foreignKeys).toEqual([{ foreign_keys: 1 }])
      expect(settings.version).toEqual([{ user_version: latestVersion }])
    })
  )

  describe("the database refuses what the domain refuses", () => {
    it.effect("CHECK constraints reject a bad state written with raw SQL", () =>
      Effect.gen(function* () {
        const filename = join(freshHome(), "state.db")
        const launch = yield* withStore(filename, (store) =>
          Effect.gen(function* () {
            const launch = yield* createLaunch(store)
            yield* store.createAllocation(
              new Allocation({
                id: "allocation-1",
                instanceId: launch.instance.id,
                runId: launch.run.id,
                state: "active",
                createdAt: T0,
                releasedAt: null
              })
            )
            yield* store.appendOutput(launch.run.id, "stdout", 0, new Uint8Array([1, 2, 3]))
            return launch
          })
        )
        const codes = yield* withRaw(filename, (sql) =>
          Effect.forEach(
            [
              sql.unsafe("UPDATE instances SET state = 'exploded' WHERE id = ?", [launch.instance.id]),
              sql.unsafe("UPDATE runs SET state = 'done' WHERE id = ?", [launch.run.id]),
              sql.unsafe("UPDATE manifests SET state = 'half-open' WHERE id = ?", [launch.manifest.id]),
              sql.unsafe("UPDATE allocations SET state = 'lost' WHERE id = 'allocation-1'"),
              sql.unsafe("UPDATE output SET stream = 'stdin' WHERE run_id = ?", [launch.run.id]),
              sql.unsafe("UPDATE output SET \"offset\" = -1 WHERE run_id = ?", [launch.run.id]),
              sql.unsafe("INSERT INTO manifests (id, controller_id, state, created_at) VALUES ('m', 'c', 'OPEN', 0)")
            ],
            (statement) => Effect.map(Effect.flip(statement), failureCode)
          )
        )
        expect(codes).toEqual(Array.from({ length: 7 }, () => Option.some("SQLITE_CONSTRAINT_CHECK")))

        const after = yield* withStore(filename, (store) =>
          Effect.all([store.getInstance(launch.instance.id), store.getRun(launch.run.id)])
        )
        expect(after).toEqual([Option.some(launch.instance), Option.some(launch.run)])
      })
    )

    it.effect("a row the domain schema refuses is a decode error, not a bad value", () =>
      Effect.gen(function* () {
        const filename = join(freshHome(), "state.db")
        const launch = yield* withStore(filename, createLaunch)
        yield* withRaw(filename, (sql) =>
          Effect.all([
            sql.unsafe("UPDATE runs SET env = '{not json' WHERE id = ?", [launch.run.id]),
            sql.unsafe("UPDATE instances SET created_at = 'yesterday' WHERE id = ?", [launch.instance.id])
          ])
        )
        const reasons = yield* withStore(filename, (store) =>
          Effect.all([reasonOf(store.getRun(launch.run.id)), reasonOf(store.getInstance(launch.instance.id))])
        )
        expect(reasons).toEqual([Option.some("decode"), Option.some("decode")])
      })
    )
  })

  describe("compressed output", () => {
    const text = (n: number) => new TextEncoder().encode(Array.from({ length: n }, (_, i) => `line ${i} of the log\n`).join(""))
    const decoded = (chunks: ReadonlyArray<{ readonly data: Uint8Array }>) => new TextDecoder().decode(Buffer.concat(chunks.map((c) => c.data)))
    const Rows = Schema.Array(Schema.Struct({ encoding: Schema.String, size: Schema.Number, stored: Schema.Number }))
    const storedRows = (filename: string) =>
      withRaw(filename, (sql) => sql.unsafe('SELECT encoding, size, length(data) AS stored FROM output ORDER BY seq')).pipe(
        Effect.flatMap(Schema.decodeUnknown(Rows))
      )
    /** A new store file with one launch, whose output `write` appends; the file is closed after. */
    const launchWithOutput = <E>(write: (store: StoreService, runId: string) => Effect.Effect<unknown, E>) =>
      Effect.gen(function* () {
        const filename = join(freshHome(), "state.db")
        const launch = yield* withStore(filename, (store) =>
          Effect.flatMap(createLaunch(store), (launch) => Effect.as(write(store, launch.run.id), launch))
        )
        return { filename, launch }
      })

    it.effect("keeps the compressed form it is given, and reads back the bytes as written", () =>
      Effect.gen(function* () {
        const data = text(5000)
        const { filename, launch } = yield* launchWithOutput((store, runId) =>
          Effect.gen(function* () {
            expect(yield* store.appendOutput(runId, "stdout", 0, data, deflateSync(data))).toBe(data.length)
            expect(yield* store.appendOutput(runId, "stdout", data.length, data)).toBe(2 * data.length)
          })
        )
        const rows = yield* storedRows(filename)
        expect(rows.map((r) => [r.encoding, r.size])).toEqual([["deflate", data.length], ["identity", data.length]])
        expect(rows[0]!.stored).toBeLessThan(data.length / 5)
        const chunks = yield* withStore(filename, (store) => store.readOutput(launch.run.id, 0, 10))
        expect(decoded(chunks)).toBe(new TextDecoder().decode(data).repeat(2))
      })
    )

    it.effect("keeps a gzip-wrapped form as it is given, beside zlib-wrapped ones, and another store reads both back", () =>
      Effect.gen(function* () {
        const data = text(5000)
        const gzipped = gzipSync(data)
        const { filename, launch } = yield* launchWithOutput((store, runId) =>
          Effect.gen(function* () {
            yield* store.appendOutput(runId, "stdout", 0, data, gzipped)
            yield* store.appendOutput(runId, "stdout", data.length, data, deflateSync(data))
          })
        )
        const rows = yield* storedRows(filename)
        expect(rows.map((r) => [r.encoding, r.size])).toEqual([["deflate", data.length], ["deflate", data.length]])
        expect(rows[0]!.stored).toBe(gzipped.length)
        // A fresh store, as another process: nothing is kept in memory, both rows are inflated.
        const chunks = yield* withStore(filename, (store) => store.readOutput(launch.run.id, 0, 10))
        expect(decoded(chunks)).toBe(new TextDecoder().decode(data).repeat(2))
      })
    )

    it.effect("a compressed row that does not inflate to its size is a decode error", () =>
      Effect.gen(function* () {
        const data = text(100)
        const { filename, launch } = yield* launchWithOutput((store, runId) => store.appendOutput(runId, "stdout", 0, data, deflateSync(data)))
        yield* withRaw(filename, (sql) => sql.unsafe("UPDATE output SET size = size - 1"))
        expect(yield* withStore(filename, (store) => reasonOf(store.readOutput(launch.run.id, 0, 10)))).toEqual(Option.some("decode"))
        yield* withRaw(filename, (sql) => sql.unsafe("UPDATE output SET size = size + 1, data = x'789c00'"))
        expect(yield* withStore(filename, (store) => reasonOf(store.readOutput(launch.run.id, 0, 10)))).toEqual(Option.some("decode"))
        // A gzip header on a body that is not gzip data, and gzip data whose CRC does not match.
        yield* withRaw(filename, (sql) => sql.unsafe("UPDATE output SET data = x'1f8b0800000000000003'"))
        expect(yield* withStore(filename, (store) => reasonOf(store.readOutput(launch.run.id, 0, 10)))).toEqual(Option.some("decode"))
        const corrupt = gzipSync(data)
        corrupt.writeUInt8(corrupt.readUInt8(corrupt.length - 8) ^ 0xff, corrupt.length - 8)
        yield* withRaw(filename, (sql) => sql.unsafe("UPDATE output SET data = ?", [corrupt]))
        expect(yield* withStore(filename, (store) => reasonOf(store.readOutput(launch.run.id, 0, 10)))).toEqual(Option.some("decode"))
      })
    )

    it.effect("the first reader in the writing process gets a compressed chunk's bytes without inflating them; later readers inflate their own", () =>
      Effect.gen(function* () {
        const data = text(2000)
        const expected = new TextDecoder().decode(data)
        const filename = join(freshHome(), "state.db")
        const { first, second, damaged } = yield* withStore(filename, (store) =>
          Effect.gen(function* () {
            const launch = yield* createLaunch(store)
            yield* store.appendOutput(launch.run.id, "stdout", 0, data, deflateSync(data))
            const [first] = yield* store.readOutput(launch.run.id, 0, 10)
            const second = yield* store.readOutput(launch.run.id, 0, 10)
            yield* store.appendOutput(launch.run.id, "stdout", data.length, data, deflateSync(data))
            // The row on disk no longer inflates: only bytes kept from the append can answer.
            yield* withRaw(filename, (sql) => sql.unsafe("UPDATE output SET data = x'789c00' WHERE \"offset\" > 0"))
            const damaged = yield* store.readOutput(launch.run.id, first!.seq, 10)
            return { first: first!, second, damaged }
          })
        )
        // The very array appended, handed over once; the second reader's is its own.
        expect(first.data).toBe(data)
        expect(second[0]!.data).not.toBe(data)
        expect(decoded(second)).toBe(expected)
        expect(decoded(damaged)).toBe(expected)
        // Another store (another process) reads the file as it is.
        const other = yield* withStore(filename, (fresh) => reasonOf(fresh.readOutput(first.runId, first.seq, 10)))
        expect(other).toEqual(Option.some("decode"))
      })
    )

    it("keeps recent chunks within its budget, oldest out first, for one reader, matching a row only exactly", () => {
      const recent = new RecentChunks(10)
      const bytes = (n: number) => new Uint8Array(n).fill(n)
      recent.remember(1, "r", "stdout", 0, bytes(4))
      recent.remember(2, "r", "stdout", 4, bytes(4))
      recent.remember(3, "r", "stdout", 8, bytes(4))
      recent.remember(4, "r", "stdout", 12, bytes(11))
      const row = (seq: number, offset: number, size = 4) => ({ seq, runId: "r", stream: "stdout", offset, size })
      expect(recent.take(row(1, 0))).toBeUndefined()
      expect(recent.take(row(4, 12, 11))).toBeUndefined()
      expect(recent.take(row(3, 9))).toBeUndefined()
      expect(recent.take({ ...row(3, 8), runId: "other" })).toBeUndefined()
      expect(recent.take({ ...row(3, 8), stream: "stderr" })).toBeUndefined()
      expect(recent.take(row(3, 8, 5))).toBeUndefined()
      expect(recent.take(row(2, 4))).toEqual(bytes(4))
      expect(recent.take(row(2, 4))).toBeUndefined()
      // What was taken no longer counts against the budget.
      recent.remember(5, "r", "stdout", 23, bytes(6))
      expect(recent.take(row(3, 8))).toEqual(bytes(4))
    })

    it.effect("a version 1 database keeps its output, and its readers' cursors, across the upgrade", () =>
      Effect.gen(function* () {
        const first = text(10)
        const { filename, launch } = yield* launchWithOutput((store, runId) =>
          Effect.zipRight(store.appendOutput(runId, "stdout", 0, first), store.appendOutput(runId, "stderr", 0, first))
        )
        // The output table as version 1 made it.
        yield* withRaw(filename, (sql) =>
          Effect.gen(function* () {
            yield* sql.unsafe(
              'CREATE TABLE output_v1 (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL REFERENCES runs (id), stream TEXT NOT NULL, "offset" INTEGER NOT NULL, data BLOB NOT NULL)'
            )
            yield* sql.unsafe('INSERT INTO output_v1 (seq, run_id, stream, "offset", data) SELECT seq, run_id, stream, "offset", data FROM output')
            yield* sql.unsafe("DROP TABLE output")
            yield* sql.unsafe("ALTER TABLE output_v1 RENAME TO output")
            yield* sql.unsafe("DROP INDEX instances_live")
            yield* sql.unsafe("ALTER TABLE instances DROP COLUMN terminated_at")
            yield* sql.unsafe("PRAGMA user_version = 1")
          })
        )
        const { before, after } = yield* withStore(filename, (store) =>
          Effect.gen(function* () {
            const before = yield* store.readOutput(launch.run.id, 0, 10)
            yield* store.appendOutput(launch.run.id, "stdout", first.length, first, deflateSync(first))
            const after = yield* store.readOutput(launch.run.id, before[before.length - 1]!.seq, 10)
            return { before, after }
          })
        )
        expect(before.map((c) => [c.stream, c.offset, c.data.length])).toEqual([["stdout", 0, first.length], ["stderr", 0, first.length]])
        expect(after.map((c) => [c.stream, c.offset])).toEqual([["stdout", first.length]])
        expect(decoded(after)).toBe(new TextDecoder().decode(first))
        const version = yield* withRaw(filename, (sql) => sql.unsafe("PRAGMA user_version"))
        expect(version).toEqual([{ user_version: latestVersion }])
      })
    )
  })

  describe("live instances", () => {
    it.effect("a version 2 database gains the index of live instances; its terminated instances stay out of it", () =>
      Effect.gen(function* () {
        const filename = join(freshHome(), "state.db")
        const [live, ended] = yield* withStore(filename, (store) =>
          Effect.gen(function* () {
            const live = yield* createLaunch(store)
            const ended = yield* createLaunch(store, T0 + 1)
            yield* store.transitionInstance(ended.instance.id, "terminating")
            yield* store.transitionInstance(ended.instance.id, "terminated")
            return [live, ended] as const
          })
        )
        // The instances table as version 2 made it.
        yield* withRaw(filename, (sql) =>
          Effect.gen(function* () {
            yield* sql.unsafe("DROP INDEX instances_live")
            yield* sql.unsafe("ALTER TABLE instances DROP COLUMN terminated_at")
            yield* sql.unsafe("PRAGMA user_version = 2")
          })
        )
        const listed = yield* withStore(filename, (store) => store.listInstances({ states: liveInstanceStates }))
        expect(listed.map((i) => i.id)).toEqual([live.instance.id])
        // The upgrade marked the instance that had ended: the index holds the live one alone.
        const rows = yield* withRaw(filename, (sql) =>
          sql.unsafe("SELECT id, terminated_at IS NOT NULL AS ended FROM instances ORDER BY created_at")
        )
        expect(rows).toEqual([{ id: live.instance.id, ended: 0 }, { id: ended.instance.id, ended: 1 }])
        const indexed = yield* withRaw(filename, (sql) => sql.unsafe("SELECT id FROM instances INDEXED BY instances_live WHERE terminated_at IS NULL"))
        expect(indexed).toEqual([{ id: live.instance.id }])
      })
    )

    it.effect("only the move to terminated takes an instance out of the index; moves between live states do not write it", () =>
      Effect.gen(function* () {
        const filename = join(freshHome(), "state.db")
        const launch = yield* withStore(filename, createLaunch)
        const endedAt = () =>
          withRaw(filename, (sql) =>
            Effect.map(sql.unsafe<{ readonly at: number | null }>("SELECT terminated_at AS at FROM instances WHERE id = ?", [launch.instance.id]), (rows) => rows[0]?.at)
          )
        yield* withStore(filename, (store) => store.transitionInstance(launch.instance.id, "spawning"))
        expect(yield* endedAt()).toBeNull()
        yield* withStore(filename, (store) =>
          Effect.zipRight(store.transitionInstance(launch.instance.id, "terminating"), store.transitionInstance(launch.instance.id, "terminated"))
        )
        expect(yield* endedAt()).toBeTypeOf("number")
        expect(yield* withStore(filename, (store) => store.listInstances({ states: liveInstanceStates }))).toEqual([])
      })
    )

    it.effect("a listing of live instances reads the index of live ones, not every instance ever made", () =>
      Effect.gen(function* () {
        const filename = join(freshHome(), "state.db")
        yield* withStore(filename, () => Effect.void)
        const plan = (filter: InstanceFilter) =>
          withRaw(filename, (sql) => {
            const [statement, params] = instancesQuery("id", filter)
            return Effect.map(sql.unsafe<{ readonly detail: string }>(`EXPLAIN QUERY PLAN ${statement}`, params), (rows) =>
              rows.map((r) => r.detail).join("; ")
            )
          })
        // What every engine start and reaper pass asks for.
        expect(yield* plan({ states: liveInstanceStates })).toMatch(/USING INDEX instances_live/)
        expect(yield* plan({ states: ["spawning"], provider: "local" })).toMatch(/USING INDEX instances_live/)
        // Asked for terminated ones too, the index cannot answer: the query reads the table.
        expect(yield* plan({ states: ["terminated", "spawning"] })).not.toMatch(/instances_live/)
        expect(yield* plan({})).not.toMatch(/instances_live/)
      })
    )
  })

  describe("locks", () => {
    it.live(
      "a write waits out another process's transaction longer than the busy timeout",
      () =>
        Effect.gen(function* () {
          const filename = join(freshHome(), "state.db")
          yield* withStore(filename, (store) =>
            Effect.gen(function* () {
              const launch = yield* createLaunch(store)
              const holdMs = BUSY_TIMEOUT_MS * 3
              const holder = yield* withRaw(filename, (sql) =>
                Effect.gen(function* () {
                  yield* sql.unsafe("BEGIN IMMEDIATE")
                  yield* sql.unsafe("UPDATE controllers SET pid = pid")
                  yield* Effect.sleep(holdMs)
                  yield* sql.unsafe("COMMIT")
                })
              ).pipe(Effect.fork)
              // Let the holder take the lock first.
              yield* Effect.sleep(50)
              const started = Date.now()
              // Readers are never blocked in WAL mode, even while the lock is held.
              expect(Option.map(yield* store.getInstance(launch.instance.id), (i) => i.state)).toEqual(
                Option.some("requested")
              )
              const moved = yield* store.transitionInstance(launch.instance.id, "spawning")
              const waited = Date.now() - started
              yield* Fiber.join(holder)
              expect(moved.state).toBe("spawning")
              expect(waited).toBeGreaterThanOrEqual(BUSY_TIMEOUT_MS)
            })
          )
        }),
      30_000
    )
  })

  describe("prepared statements", () => {
    /** A launch's whole life through the store, as the engine writes and reads it. */
    const lifecycle = (store: StoreService, createdAt: number) =>
      Effect.gen(function* () {
        const { instance, run, manifest } = yield* createLaunch(store, createdAt)
        yield* store.transitionInstance(instance.id, "spawning")
        yield* store.transitionInstance(instance.id, "booting", { providerRef: `ref-${createdAt}`, region: null })
        yield* store.transitionInstance(instance.id, "ready")
        const allocation = new Allocation({ id: `a-${createdAt}`, instanceId: instance.id, runId: run.id, state: "active", createdAt, releasedAt: null })
        yield* store.createAllocation(allocation)
        yield* store.transitionInstance(instance.id, "allocated")
        yield* store.transitionRun(run.id, "provisioning")
        yield* store.transitionRun(run.id, "running", { startedAt: createdAt })
        yield* store.appendOutput(run.id, "stdout", 0, new TextEncoder().encode("hi\n"))
        yield* store.readOutput(run.id, 0, 10)
        yield* store.outputEnd(run.id, "stdout")
        yield* store.getRun(run.id)
        yield* store.transitionRun(run.id, "succeeded", { exitCode: 0, endedAt: createdAt })
        yield* store.transitionAllocation(allocation.id, "released", createdAt)
        yield* store.getInstance(instance.id)
        yield* store.transitionInstance(instance.id, "terminating")
        yield* store.transitionInstance(instance.id, "terminated")
        yield* store.closeManifest(manifest.id)
        yield* store.listRuns()
        yield* store.listInstances()
      })

    it.effect.skipIf(process.versions.bun === undefined)(
      "on Bun, a launch's statements stay prepared from one launch to the next",
      () =>
        Effect.gen(function* () {
          // bun:sqlite prepares a statement in `query` unless its cache has one for that text.
          const specifier = "bun:sqlite"
          const sqlite: { Database: { prototype: { query: (this: unknown, sql: string) => object } } } = yield* Effect.promise(() => import(specifier))
          const query = sqlite.Database.prototype.query
          const statements = new Set<object>()
          let pass: Array<object> = []
          sqlite.Database.prototype.query = function (sql) {
            const statement = query.call(this, sql)
            pass.push(statement)
            return statement
          }
          yield* Effect.addFinalizer(() => Effect.sync(() => void (sqlite.Database.prototype.query = query)))
          yield* withStore(join(freshHome(), "state.db"), (store) =>
            Effect.gen(function* () {
              yield* lifecycle(store, T0)
              for (const statement of pass) statements.add(statement)
              // More than bun:sqlite's own cache holds, in the same order every time: with 20,
              // least recently used out first, each would be prepared again in every launch.
              expect(statements.size).toBeGreaterThan(20)
              pass = []
              yield* lifecycle(store, T0 + 1)
              expect(pass.filter((statement) => !statements.has(statement)).length).toBe(0)
            })
          )
        }).pipe(Effect.scoped)
    )
  })

  describe("the held connection", () => {
    const heldOn = (filename: string) =>
      Effect.gen(function* () {
        const db = yield* Effect.flatMap(makeClient(filename), hold)
        yield* db.query("CREATE TABLE t (v TEXT)")
        return db
      })
    const values = (db: HeldConnection) =>
      Effect.map(db.query("SELECT v FROM t ORDER BY v"), (rows) => rows.map((row) => (row as { v: string }).v))

    it.scoped("a statement outside a transaction waits for it to end, and is not rolled back with it", () =>
      Effect.gen(function* () {
        const db = yield* heldOn(join(freshHome(), "held.db"))
        const open = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        const transaction = yield* db
          .writeTransaction(
            Effect.gen(function* () {
              yield* db.query("INSERT INTO t VALUES ('inside')")
              yield* Deferred.succeed(open, undefined)
              yield* Deferred.await(release)
              return yield* Effect.fail("given up")
            })
          )
          .pipe(Effect.flip, Effect.fork)
        yield* Deferred.await(open)
        const outside = yield* db.query("INSERT INTO t VALUES ('outside')").pipe(Effect.zipRight(values(db)), Effect.fork)
        // Run on the same connection at once, it would see 'inside' and go down with the rollback.
        for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
        expect(Option.isNone(yield* Fiber.poll(outside))).toBe(true)
        yield* Deferred.succeed(release, undefined)
        expect(yield* Fiber.join(transaction)).toBe("given up")
        expect(yield* Fiber.join(outside)).toEqual(["outside"])
        expect(yield* values(db)).toEqual(["outside"])
      })
    )

    it.scoped("inside a transaction its fiber's statements run at once and a nested transaction joins it", () =>
      Effect.gen(function* () {
        const db = yield* heldOn(join(freshHome(), "held.db"))
        const seen = yield* db.writeTransaction(
          Effect.gen(function* () {
            yield* db.query("INSERT INTO t VALUES ('a')")
            yield* db.writeTransaction(db.query("INSERT INTO t VALUES ('b')"))
            return yield* values(db)
          })
        )
        expect(seen).toEqual(["a", "b"])
        const failed = yield* db
          .writeTransaction(
            Effect.gen(function* () {
              yield* db.writeTransaction(db.query("INSERT INTO t VALUES ('c')"))
              return yield* Effect.fail("given up")
            })
          )
          .pipe(Effect.flip)
        expect(failed).toBe("given up")
        expect(yield* values(db)).toEqual(["a", "b"])
      })
    )
  })

  describe("opening", () => {
    it.effect("a file that is not a database fails to open with reason corrupt", () =>
      Effect.gen(function* () {
        const filename = join(freshHome(), "state.db")
        writeFileSync(filename, "this is not a database, ".repeat(400))
        expect(yield* reasonOf(withStore(filename, () => Effect.void))).toEqual(Option.some("corrupt"))
        // And says what to do about it, naming the file.
        const error = yield* storeErrorOf(withStore(filename, () => Effect.void))
        expect(Option.map(error, (e) => e.message)).toEqual(Option.some(expect.stringContaining(`${filename} is damaged; move it aside`)))
      })
    )

    it.effect("a file damaged past its header opens, and the operation that reaches the bad page names the file and what to do", () =>
      Effect.gen(function* () {
        const filename = join(freshHome(), "state.db")
        yield* withStore(filename, (store) => Effect.forEach(Array.from({ length: 20 }, (_, i) => T0 + i), (at) => createLaunch(store, at)))
        // Everything in the main file, and where the instances table starts in it.
        const { rootpage, pageSize } = yield* withRaw(filename, (sql) =>
          Effect.gen(function* () {
            yield* sql.unsafe("PRAGMA wal_checkpoint(TRUNCATE)")
            const [table] = yield* sql.unsafe<{ rootpage: number }>("SELECT rootpage FROM sqlite_master WHERE name = 'instances'")
            const [size] = yield* sql.unsafe<{ page_size: number }>("PRAGMA page_size")
            return { rootpage: table!.rootpage, pageSize: size!.page_size }
          })
        )
        const fd = openSync(filename, "r+")
        writeSync(fd, Buffer.alloc(pageSize, 0x5a), 0, pageSize, (rootpage - 1) * pageSize)
        closeSync(fd)
        const error = yield* storeErrorOf(withStore(filename, (store) => store.listInstances()))
        expect(Option.map(error, (e) => [e.operation, e.reason])).toEqual(Option.some(["listInstances", "corrupt"]))
        expect(Option.map(error, (e) => e.message)).toEqual(
          Option.some(expect.stringMatching(new RegExp(`^listInstances: .*\\(SQLITE_CORRUPT\\): ${filename.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} is damaged; move it aside`)))
        )
        // What does not touch that page still works.
        expect((yield* withStore(filename, (store) => store.listRuns())).length).toBe(20)
      })
    )

    it.effect("a directory where SQLite needs a file (state.db, state.db-wal) fails with reason io, naming it and what to do", () =>
      Effect.gen(function* () {
        // SQLite said only SQLITE_CANTOPEN, and for the log SQLITE_IOERR_DELETE.
        for (const suffix of ["", "-wal", "-shm"]) {
          const filename = join(freshHome(), "state.db")
          mkdirSync(`${filename}${suffix}`)
          const error = yield* storeErrorOf(withStore(filename, () => Effect.void))
          expect(Option.map(error, (e) => [e.operation, e.reason])).toEqual(Option.some(["open", "io"]))
          expect(Option.getOrElse(Option.map(error, (e) => e.message), () => "")).toMatch(
            new RegExp(`^open: .*\\(SQLITE_[A-Z_]+\\): ${literal(filename)}${suffix} is a directory, not a file SQLite can use; move it aside$`)
          )
        }
      })
    )

    it.effect("a home that is a file, or has a file in its path, fails with reason io naming that file", () =>
      Effect.gen(function* () {
        // mkdir said EEXIST, "file already exists", and ENOTDIR, neither naming the file.
        const blocker = join(freshHome(), "a-file")
        writeFileSync(blocker, "")
        for (const filename of [join(blocker, "state.db"), join(blocker, "home", "state.db")]) {
          const error = yield* storeErrorOf(withStore(filename, () => Effect.void))
          expect(Option.map(error, (e) => [e.reason, e.message])).toEqual(
            Option.some(["io", `open: ${blocker} is a file, not a directory, so ${filename} cannot be made there; move it aside, or use another state home`])
          )
        }
        expect(readFileSync(blocker, "utf8")).toBe("")
      })
    )

    it.scoped.skipIf(!canMakeImmutable)(
      "a home that became read-only after a clean exit says the home is not writable and what to do, and changes nothing",
      () =>
        Effect.gen(function* () {
          // In WAL mode SQLite makes state.db-wal and -shm even to read: it said only SQLITE_CANTOPEN.
          const home = freshHome()
          const filename = join(home, "state.db")
          yield* withStore(filename, createLaunch)
          const before = readdirSync(home).sort()
          yield* immutableWhileScoped(home)
          const error = yield* storeErrorOf(withStore(filename, () => Effect.void))
          expect(Option.map(error, (e) => [e.operation, e.reason])).toEqual(Option.some(["open", "io"]))
          expect(Option.getOrElse(Option.map(error, (e) => e.message), () => "")).toMatch(
            new RegExp(
              `^open: unable to open database file \\(SQLITE_CANTOPEN\\): the state home ${literal(home)} is not writable \\([a-z ]+\\), and SQLite must create state\\.db-wal and state\\.db-shm there to use state\\.db; make it writable, or use another state home$`
            )
          )
          // SQLite's own failure is kept, as the cause.
          expect(Option.flatMap(error, (e) => failureCode(e.cause))).toEqual(Option.some("SQLITE_CANTOPEN"))
          expect(readdirSync(home).sort()).toEqual(before)
        })
    )

    it.scoped.skipIf(!canMakeImmutable)("a state.db that cannot be written still reads, and a write names the file and what to do", () =>
      Effect.gen(function* () {
        const filename = join(freshHome(), "state.db")
        yield* withStore(filename, createLaunch)
        yield* immutableWhileScoped(filename)
        const error = yield* storeErrorOf(
          withStore(filename, (store) =>
            Effect.gen(function* () {
              expect((yield* store.listRuns()).length).toBe(1)
              return yield* createLaunch(store, T0 + 1)
            })
          )
        )
        expect(Option.map(error, (e) => [e.reason, e.message])).toEqual(
          Option.some(["io", expect.stringMatching(new RegExp(`\\(SQLITE_READONLY[A-Z_]*\\): ${literal(filename)} is not writable \\([a-z ]+\\); make it writable, or use another state home$`))])
        )
      })
    )

    it.scoped.skipIf(!canMountTmpfs)("a full disk says so, naming the file, leaves a store that opens once there is room", () =>
      Effect.gen(function* () {
        const disk = freshHome()
        yield* Effect.acquireRelease(
          Effect.sync(() => spawnSync("mount", ["-t", "tmpfs", "-o", "size=40k", "tmpfs", disk])),
          () => Effect.sync(() => spawnSync("umount", ["-l", disk]))
        )
        const filename = join(disk, "home", "state.db")
        const error = yield* storeErrorOf(withStore(filename, () => Effect.void))
        expect(Option.map(error, (e) => [e.reason, e.message])).toEqual(
          Option.some(["io", `open: database or disk is full (SQLITE_FULL): the disk holding ${filename} is full; free some space on it`])
        )
        expect(spawnSync("mount", ["-o", "remount,size=4m", disk]).status).toBe(0)
        const controlId = yield* withStore(filename, (store) => Effect.as(createLaunch(store), store.controlId))
        expect(readFileSync(join(disk, "home", "control-id"), "utf8")).toBe(`${controlId}\n`)
      })
    )

    it.effect("a database written by a newer schema is refused", () =>
      Effect.gen(function* () {
        const filename = join(freshHome(), "state.db")
        yield* withStore(filename, () => Effect.void)
        yield* withRaw(filename, (sql) => sql.unsafe(`PRAGMA user_version = ${latestVersion + 1}`))
        const error = yield* storeErrorOf(withStore(filename, () => Effect.void))
        expect(Option.map(error, (e) => e.reason)).toEqual(Option.some("corrupt"))
        expect(Option.getOrElse(Option.map(error, (e) => e.message), () => "")).toContain("newer")
        expect(Option.getOrElse(Option.map(error, (e) => e.message), () => "")).not.toContain("move it aside")
      })
    )

    it.effect("an in-memory store works and has a control id, with no file anywhere", () =>
      Effect.gen(function* () {
        const instance = yield* Effect.gen(function* () {
          const store = yield* Store
          expect(store.controlId).toMatch(/^[0-9a-z]{8}$/)
          const launch = yield* createLaunch(store)
          return yield* store.transitionInstance(launch.instance.id, "spawning")
        }).pipe(Effect.provide(SqliteStore.layer({ filename: ":memory:" })))
        expect(instance.state).toBe("spawning")
        expect(existsSync(join(process.cwd(), "control-id"))).toBe(false)
      })
    )

    it.effect("a filename that is empty, has a NUL or is not a string is refused before anything is opened", () =>
      Effect.gen(function* () {
        const cwd = process.cwd()
        const before = existsSync(join(cwd, "control-id"))
        const cases: ReadonlyArray<[unknown, string]> = [
          [{ filename: "" }, "is empty (use \":memory:\""],
          [{ filename: join(freshHome(), "state\0.db") }, "NUL"],
          [{ filename: 5 }, "Expected string"],
          [null, "SqliteStore options"]
        ]
        for (const [options, says] of cases) {
          // Options from code that is not typed: what a JavaScript caller could pass.
          const opened = Effect.flatMap(Store, () => Effect.void).pipe(
            Effect.provide(SqliteStore.layer(options as SqliteStore.SqliteStoreOptions))
          )
          const error = yield* storeErrorOf(opened)
          expect(Option.map(error, (e) => e.reason)).toEqual(Option.some("options"))
          expect(Option.getOrElse(Option.map(error, (e) => e.message), () => "")).toContain(says)
        }
        expect(existsSync(join(cwd, "control-id"))).toBe(before)
      })
    )

    it.effect("a filename longer than SQLite opens is refused with the limit, before its directory is made", () =>
      Effect.gen(function* () {
        // SQLite said only SQLITE_CANTOPEN. Components of 100 bytes, within a file name's 255.
        const parts = Array.from({ length: 5 }, () => "d".repeat(100))
        const filename = join(freshHome(), ...parts, "state.db")
        const opened = Effect.flatMap(Store, () => Effect.void).pipe(Effect.provide(SqliteStore.layer({ filename })))
        const error = yield* storeErrorOf(opened)
        expect(Option.map(error, (e) => e.reason)).toEqual(Option.some("options"))
        expect(Option.getOrElse(Option.map(error, (e) => e.message), () => "")).toContain(`over ${SqliteStore.MAX_PATH_BYTES} bytes`)
        expect(existsSync(dirname(filename))).toBe(false)
      })
    )

    it.effect("layerFromHome refuses a home that is not a path, or empty, as an options StoreError", () =>
      Effect.gen(function* () {
        const opened = (home: unknown) =>
          Effect.suspend(() => Effect.flatMap(Store, () => Effect.void).pipe(Effect.provide(SqliteStore.layerFromHome(home as string))))
        const refusal = (home: unknown) =>
          Effect.map(storeErrorOf(opened(home)), Option.map((e) => `${e.reason}: ${e.message}`))
        // A TypeError from `join` each, and "" a state.db in the current directory.
        expect(yield* refusal(5)).toEqual(Option.some("options: SqliteStore.layerFromHome: the home must be a path, not 5"))
        expect(yield* refusal(null)).toEqual(Option.some("options: SqliteStore.layerFromHome: the home must be a path, not null"))
        expect(yield* refusal(" ")).toEqual(Option.some("options: SqliteStore.layerFromHome: the home must not be empty"))
        // It said `must be a path, not "/x"`, the boxed string shown as the path it holds.
        expect(yield* refusal(new String("/x"))).toEqual(Option.some('options: SqliteStore.layerFromHome: the home must be a path, not new String("/x")'))
        const layered = (options: unknown) =>
          Effect.map(
            storeErrorOf(Effect.suspend(() => Effect.flatMap(Store, () => Effect.void).pipe(Effect.provide(SqliteStore.layer(options as SqliteStore.SqliteStoreOptions))))),
            Option.map((e) => `${e.reason}: ${e.message}`)
          )
        // It said "filename: Expected string, actual /x".
        expect(yield* layered({ filename: new String("/x") })).toEqual(
          Option.some('options: SqliteStore options: filename: new String("/x") is an object, not a string; give the value itself')
        )
        expect(existsSync(join(process.cwd(), "state.db"))).toBe(false)
      })
    )

    it.effect("a filename of exactly the limit opens, and SQLite makes its -wal and -shm (4 bytes longer) beside it", () =>
      Effect.gen(function* () {
        const home = freshHome()
        let directory = home
        const room = SqliteStore.MAX_PATH_BYTES - "/state.db".length
        while (Buffer.byteLength(directory) < room) {
          directory = join(directory, "d".repeat(Math.min(100, room - Buffer.byteLength(directory) - 1)))
        }
        const filename = join(directory, "state.db")
        expect(SqliteStore.pathBytes(filename)).toBe(SqliteStore.MAX_PATH_BYTES)
        const files = yield* withStore(filename, (store) =>
          Effect.as(createLaunch(store), ["state.db-wal", "state.db-shm"].map((file) => existsSync(join(directory, file))))
        )
        expect(files).toEqual([true, true])
        expect((yield* withStore(filename, (store) => store.listRuns())).length).toBe(1)
      })
    )

    it.effect("layerFromHome creates the home and keeps state.db and control-id in it", () =>
      Effect.gen(function* () {
        const home = join(freshHome(), "nested", "home")
        const controlId = yield* Effect.map(Store, (s) => s.controlId).pipe(
          Effect.provide(SqliteStore.layerFromHome(home))
        )
        expect(existsSync(join(home, "state.db"))).toBe(true)
        expect(readFileSync(join(home, "control-id"), "utf8")).toBe(`${controlId}\n`)
      })
    )
  })

  describe("control id", () => {
    const openHome = (home: string) =>
      Effect.map(Store, (s) => s.controlId).pipe(Effect.provide(SqliteStore.layerFromHome(home)))

    const deleteDatabase = (home: string) => {
      for (const suffix of ["", "-wal", "-shm"]) rmSync(join(home, `state.db${suffix}`), { force: true })
    }

    it.effect("survives deleting the database, through the file beside it", () =>
      Effect.gen(function* () {
        const home = freshHome()
        const first = yield* Effect.gen(function* () {
          const store = yield* Store
          yield* createLaunch(store)
          return store.controlId
        }).pipe(Effect.provide(SqliteStore.layerFromHome(home)))

        deleteDatabase(home)
        const second = yield* Effect.gen(function* () {
          const store = yield* Store
          // A new database: the records are gone, the identity is not.
          expect(yield* store.listInstances()).toEqual([])
          return store.controlId
        }).pipe(Effect.provide(SqliteStore.layerFromHome(home)))
        expect(second).toBe(first)
      })
    )

    it.effect("the database is the authority: a missing or different file is rewritten from it", () =>
      Effect.gen(function* () {
        const home = freshHome()
        const id = yield* openHome(home)
        rmSync(join(home, "control-id"))
        expect(yield* openHome(home)).toBe(id)
        expect(readFileSync(join(home, "control-id"), "utf8")).toBe(`${id}\n`)

        writeFileSync(join(home, "control-id"), id === "zzzzzzzz" ? "yyyyyyyy\n" : "zzzzzzzz\n")
        expect(yield* openHome(home)).toBe(id)
        expect(readFileSync(join(home, "control-id"), "utf8")).toBe(`${id}\n`)
      })
    )

    it.effect("a malformed control-id file is refused rather than replaced when the database is new", () =>
      Effect.gen(function* () {
        const home = freshHome()
        writeFileSync(join(home, "control-id"), "not-an-id\n")
        expect(yield* reasonOf(openHome(home))).toEqual(Option.some("corrupt"))
        expect(readFileSync(join(home, "control-id"), "utf8")).toBe("not-an-id\n")
      })
    )

    it.effect("a control-id file written by hand is adopted by a new database", () =>
      Effect.gen(function* () {
        const home = freshHome()
        writeFileSync(join(home, "control-id"), "  abcd1234 \n")
        expect(yield* openHome(home)).toBe("abcd1234")
      })
    )

    it.live(
      "processes opening a new home at the same moment agree on one id",
      () =>
        Effect.gen(function* () {
          const home = join(freshHome(), "shared")
          mkdirSync(home)
          const results = yield* runTogether(Array.from({ length: 4 }, () => ["open", home]))
          for (const result of results) expect(result, result.stderr).toMatchObject({ code: 0 })
          const ids = yield* Effect.forEach(results, (r) => Effect.map(lastLine(OpenReport, r), (o) => o.controlId))
          expect(new Set(ids).size).toBe(1)
          expect(readFileSync(join(home, "control-id"), "utf8")).toBe(`${ids[0]}\n`)
          expect(yield* openHome(home)).toBe(ids[0])
        }),
      120_000
    )
  })

  describe("several processes on one file", () => {
    it.live(
      "write transitions and output at once with no error and consistent data",
      () =>
        Effect.gen(function* () {
          const workers = 6
          const filename = join(freshHome(), "state.db")
          const payload = Array.from({ length: 40 }, (_, i) => `shared line ${i}\n`).join("")
          const now = Date.now()

          const setup = yield* withStore(filename, (store) =>
            Effect.gen(function* () {
              const contended = yield* Effect.forEach(Array.from({ length: 30 }), () =>
                Effect.gen(function* () {
                  const launch = yield* createLaunch(store, now)
                  for (const to of ["spawning", "booting", "ready"] as const) {
                    yield* store.transitionInstance(launch.instance.id, to)
                  }
                  return launch.instance.id
                })
              )
              const expired = yield* Effect.forEach(Array.from({ length: 20 }), () =>
                Effect.gen(function* () {
                  const launch = launchOf(store, now)
                  const instance = new Instance({ ...launch.instance, ownerControllerId: "ghost", leaseExpiresAt: now - 1 })
                  yield* store.createLaunch(launch.manifest, instance, launch.run)
                  return instance.id
                })
              )
              const shared = yield* createLaunch(store, now)
              return { contended, expired, sharedRunId: shared.run.id, controlId: store.controlId }
            })
          )

          const plans = Array.from(
            { length: workers },
            (_, worker): WorkPlan => ({
              filename,
              worker,
              launches: 12,
              // The same order for all: the workers collide on each instance at nearly the same time.
              contended: setup.contended,
              sharedRunId: setup.sharedRunId,
              sharedPayload: payload,
              now
            })
          )
          const results = yield* runTogether(plans.map((plan) => ["work", JSON.stringify(plan)]))
          for (const result of results) expect(result, result.stderr).toMatchObject({ code: 0, stderr: "" })
          const reports = yield* Effect.forEach(results, (r) => lastLine(WorkReport, r))

          // Every contended instance was taken by exactly one process.
          const wins = reports.flatMap((r) => r.wins)
          expect([...wins].sort()).toEqual([...setup.contended].sort())
          // Every expired instance was claimed by exactly one process.
          const claimed = reports.flatMap((r) => r.claimed)
          expect([...claimed].sort()).toEqual([...setup.expired].sort())
          expect(reports.every((r) => r.controlId === setup.controlId)).toBe(true)

          yield* withStore(filename, (store) =>
            Effect.gen(function* () {
              for (const id of setup.contended) {
                expect(Option.map(yield* store.getInstance(id), (i) => i.state)).toEqual(Option.some("allocated"))
              }
              for (const report of reports) {
                for (const id of report.claimed) {
                  expect(Option.map(yield* store.getInstance(id), (i) => i.ownerControllerId)).toEqual(
                    Option.some(`worker-${report.worker}`)
                  )
                }
                expect(report.own).toHaveLength(12)
                for (const own of report.own) {
                  expect(Option.map(yield* store.getInstance(own.instanceId), (i) => i.state)).toEqual(
                    Option.some("terminated")
                  )
                  expect(Option.flatMap(yield* store.getInstance(own.instanceId), (i) => Option.fromNullable(i.providerRef))).toEqual(
                    Option.some(`ref-${report.own.indexOf(own)}`)
                  )
                  expect(Option.map(yield* store.getRun(own.runId), (r) => [r.state, r.exitCode])).toEqual(
                    Option.some(["succeeded", 0])
                  )
                  const chunks = yield* store.readOutput(own.runId, 0, 1_000)
                  expect(new TextDecoder().decode(Buffer.concat(chunks.map((c) => c.data)))).toBe(own.output)
                }
              }
              // Six uploaders of the same bytes leave one copy, in contiguous chunks.
              const shared = yield* store.readOutput(setup.sharedRunId, 0, 10_000)
              let end = 0
              for (const chunk of shared) {
                expect(chunk.offset).toBe(end)
                end += chunk.data.length
              }
              expect(new TextDecoder().decode(Buffer.concat(shared.map((c) => c.data)))).toBe(payload)
            })
          )
          const integrity = yield* withRaw(filename, (sql) => sql.unsafe("PRAGMA integrity_check"))
          expect(integrity).toEqual([{ integrity_check: "ok" }])
        }),
      180_000
    )
  })
})
