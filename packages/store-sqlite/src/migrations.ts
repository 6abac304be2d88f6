import type { SqlError } from "@effect/sql/SqlError"
import { AllocationState, InstanceState, ManifestState, OutputStream, RunState, StoreError } from "@skyrepl/core"
import { Effect, type ParseResult, Schema } from "effect"
import type { HeldConnection } from "./connection.ts"
import { OutputEncoding } from "./output-encoding.ts"

const quote = (literal: string): string => `'${literal.replaceAll("'", "''")}'`

/**
 * The allowed values come from the domain's own schemas, so the database refuses exactly what
 * the code would refuse, even when someone writes to the file by hand.
 */
const oneOf = (column: string, literals: ReadonlyArray<string>): string =>
  `CHECK (${column} IN (${literals.map(quote).join(", ")}))`

export interface Migration {
  readonly version: number
  readonly name: string
  readonly statements: ReadonlyArray<string>
}

/** Append-only: a released migration is never edited, a change is a new entry. */
export const migrations: ReadonlyArray<Migration> = [
  {
    version: 1,
    name: "initial",
    statements: [
      `CREATE TABLE meta (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
      )`,
      `CREATE TABLE controllers (
        id TEXT PRIMARY KEY NOT NULL,
        pid INTEGER NOT NULL,
        hostname TEXT NOT NULL,
        hub_url TEXT NOT NULL,
        secret TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        lease_expires_at INTEGER NOT NULL
      )`,
      `CREATE TABLE manifests (
        id TEXT PRIMARY KEY NOT NULL,
        controller_id TEXT NOT NULL,
        state TEXT NOT NULL ${oneOf("state", ManifestState.literals)},
        created_at INTEGER NOT NULL
      )`,
      `CREATE TABLE instances (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL UNIQUE,
        manifest_id TEXT NOT NULL REFERENCES manifests (id),
        provider TEXT NOT NULL,
        spec TEXT NOT NULL,
        region TEXT,
        provider_ref TEXT,
        state TEXT NOT NULL ${oneOf("state", InstanceState.literals)},
        owner_controller_id TEXT,
        lease_expires_at INTEGER,
        agent_token TEXT NOT NULL,
        error TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      )`,
      // No index mentions `state`, not even in a partial index's WHERE: every transition would
      // then rewrite an index page as well as the row, which halves transitions per second.
      // Claiming expired leases scans the table instead; it runs once per lease period.
      `CREATE INDEX instances_owner ON instances (owner_controller_id)`,
      `CREATE INDEX instances_manifest ON instances (manifest_id)`,
      `CREATE TABLE runs (
        id TEXT PRIMARY KEY NOT NULL,
        manifest_id TEXT NOT NULL REFERENCES manifests (id),
        instance_id TEXT NOT NULL REFERENCES instances (id),
        provider TEXT NOT NULL,
        command TEXT NOT NULL,
        env TEXT NOT NULL,
        workdir TEXT,
        max_duration_ms INTEGER,
        state TEXT NOT NULL ${oneOf("state", RunState.literals)},
        exit_code INTEGER,
        signal TEXT,
        error TEXT,
        owner_controller_id TEXT,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        ended_at INTEGER
      )`,
      `CREATE INDEX runs_created ON runs (created_at, id)`,
      `CREATE INDEX runs_instance ON runs (instance_id, created_at)`,
      `CREATE INDEX runs_manifest ON runs (manifest_id)`,
      `CREATE TABLE allocations (
        id TEXT PRIMARY KEY NOT NULL,
        instance_id TEXT NOT NULL REFERENCES instances (id),
        run_id TEXT NOT NULL REFERENCES runs (id),
        state TEXT NOT NULL ${oneOf("state", AllocationState.literals)},
        created_at INTEGER NOT NULL,
        released_at INTEGER
      )`,
      `CREATE INDEX allocations_created ON allocations (created_at, id)`,
      `CREATE INDEX allocations_instance ON allocations (instance_id)`,
      `CREATE INDEX allocations_run ON allocations (run_id)`,
      // AUTOINCREMENT: a seq is never reused, so a reader's `afterSeq` cursor stays valid.
      `CREATE TABLE output (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL REFERENCES runs (id),
        stream TEXT NOT NULL ${oneOf("stream", OutputStream.literals)},
        "offset" INTEGER NOT NULL CHECK ("offset" >= 0),
        data BLOB NOT NULL CHECK (length(data) > 0)
      )`,
      // Unique: two chunks claiming the same bytes would replay twice.
      `CREATE UNIQUE INDEX output_stream_offset ON output (run_id, stream, "offset")`,
      `CREATE INDEX output_run_seq ON output (run_id, seq)`
    ]
  },
  {
    version: 2,
    name: "compressed output",
    // `size` is the chunk's length in its stream (what a reader gets back); `data` holds those
    // bytes as `encoding` says. SQLite cannot add a constrained column in place, so the table is
    // rebuilt; seq values are copied, so readers' cursors stay valid.
    statements: [
      `CREATE TABLE output_v2 (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL REFERENCES runs (id),
        stream TEXT NOT NULL ${oneOf("stream", OutputStream.literals)},
        "offset" INTEGER NOT NULL CHECK ("offset" >= 0),
        size INTEGER NOT NULL CHECK (size > 0),
        encoding TEXT NOT NULL ${oneOf("encoding", OutputEncoding.literals)},
        data BLOB NOT NULL CHECK (length(data) > 0),
        CHECK (encoding <> 'identity' OR length(data) = size)
      )`,
      `INSERT INTO output_v2 (seq, run_id, stream, "offset", size, encoding, data)
        SELECT seq, run_id, stream, "offset", length(data), 'identity', data FROM output`,
      `DROP TABLE output`,
      `ALTER TABLE output_v2 RENAME TO output`,
      `CREATE UNIQUE INDEX output_stream_offset ON output (run_id, stream, "offset")`,
      `CREATE INDEX output_run_seq ON output (run_id, seq)`
    ]
  },
  {
    version: 3,
    name: "live instances",
    // Every engine's start (each `repl` command's) and every reaper pass list the instances not
    // yet terminated. Without an index that read every instance ever made, so the cost of a
    // command grew with the history. The index holds live instances only, and mentions neither
    // `state` nor `updated_at` (see above): a transition between live states leaves it alone,
    // and only the move to `terminated`, which sets `terminated_at`, takes an entry out.
    statements: [
      `ALTER TABLE instances ADD COLUMN terminated_at INTEGER`,
      `UPDATE instances SET terminated_at = updated_at WHERE state = 'terminated'`,
      `CREATE INDEX instances_live ON instances (created_at, id) WHERE terminated_at IS NULL`
    ]
  }
]

export const latestVersion: number = migrations.reduce((max, m) => Math.max(max, m.version), 0)

const UserVersion = Schema.Array(Schema.Struct({ user_version: Schema.Number }))

/** The schema version the file is at (0 for a new file). */
export const schemaVersion = (db: HeldConnection): Effect.Effect<number, SqlError | ParseResult.ParseError> =>
  Effect.map(Effect.flatMap(db.unprepared("PRAGMA user_version"), Schema.decodeUnknown(UserVersion)), ([row]) => row?.user_version ?? 0)

/**
 * Brings the schema up to `latestVersion`. The version lives in `PRAGMA user_version`, which
 * is part of the database header and so commits or rolls back with the caller's transaction:
 * run inside a write transaction, two processes opening a new file cannot both migrate it.
 */
export const migrate = (db: HeldConnection): Effect.Effect<void, SqlError | StoreError | ParseResult.ParseError> =>
  Effect.gen(function* () {
    const current = yield* schemaVersion(db)
    if (current > latestVersion) {
      return yield* new StoreError({
        operation: "migrate",
        reason: "corrupt",
        message: `the database schema is version ${current}, newer than this SkyREPL understands (${latestVersion}); upgrade SkyREPL`
      })
    }
    for (const migration of migrations) {
      if (migration.version <= current) continue
      for (const statement of migration.statements) yield* db.unprepared(statement)
      yield* db.unprepared(`PRAGMA user_version = ${migration.version}`)
    }
  })
