import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import {
  Allocation,
  AllocationMachine,
  AllocationState,
  Controller,
  Env,
  type IllegalTransition,
  Instance,
  InstanceMachine,
  type InstancePatch,
  InstanceState,
  Manifest,
  ManifestMachine,
  ManifestState,
  newControlId,
  type OutputChunk,
  type OutputStream,
  Run,
  RunMachine,
  type RunPatch,
  RunState,
  boxedPrimitiveProblem,
  boxedShown,
  type StateMachine,
  describeCause,
  describeParseError,
  EMPTY_SETTING,
  Store,
  StoreError,
  type StoreService
} from "@skyrepl/core"
import { Clock, Effect, Layer, Option, type ParseResult, Schema, type Scope } from "effect"
import { mkdirSync } from "node:fs"
import { homedir } from "node:os"
import { dirname, join } from "node:path"
import { makeClient } from "./client.ts"
import { hold } from "./connection.ts"
import { CONTROL_ID_FILE, readControlIdFile, writeControlIdFile } from "./control-id.ts"
import { directoryProblem, fileProblem } from "./file-problems.ts"
import { MAX_PATH_BYTES, pathBytes } from "./path-limit.ts"
import { driverCode, type Mapped, mapStoreErrors, openAttempt, retryBusy } from "./errors.ts"
import { instancesQuery } from "./instances-query.ts"
import { latestVersion, migrate, schemaVersion } from "./migrations.ts"
import { outputChunkFromRow, RecentChunks } from "./output-encoding.ts"

export interface SqliteStoreOptions {
  /** Path of the database file; `:memory:` for a private in-memory store. */
  readonly filename: string
}

export interface MakeOptions {
  /**
   * Where the copy of the control id lives (see control-id.ts), or null for a store with no
   * lasting home, such as an in-memory database.
   */
  readonly controlIdFile: string | null
  /**
   * The database file, named in failures a user must act on (a damaged file, a full disk),
   * whether they come at open or on a later operation; null when there is none to name.
   */
  readonly filename?: string | null
}

type Failure = SqlError | ParseResult.ParseError | StoreError

// ---------------------------------------------------------------------------------------------
// Row shapes. Columns are aliased to the domain's field names in SQL so that a row decodes
// straight into the domain class with no renaming pass.

const controllerColumns =
  "id, pid, hostname, hub_url AS hubUrl, secret, started_at AS startedAt, lease_expires_at AS leaseExpiresAt"
const manifestColumns = "id, controller_id AS controllerId, state, created_at AS createdAt"
const instanceColumns =
  "id, name, manifest_id AS manifestId, provider, spec, region, provider_ref AS providerRef, state, " +
  "owner_controller_id AS ownerControllerId, lease_expires_at AS leaseExpiresAt, agent_token AS agentToken, " +
  "error, created_at AS createdAt, updated_at AS updatedAt"
const runColumns =
  "id, manifest_id AS manifestId, instance_id AS instanceId, provider, command, env, workdir, " +
  "max_duration_ms AS maxDurationMs, state, exit_code AS exitCode, signal, error, " +
  "owner_controller_id AS ownerControllerId, created_at AS createdAt, started_at AS startedAt, ended_at AS endedAt"
const allocationColumns =
  "id, instance_id AS instanceId, run_id AS runId, state, created_at AS createdAt, released_at AS releasedAt"
const outputColumns = 'run_id AS runId, seq, stream, "offset" AS offset, size, encoding, data'

/** `env` is stored as JSON text. */
const RunFromRow = Schema.compose(Schema.Struct({ ...Run.fields, env: Schema.parseJson(Env) }), Run)

const decodeControllers = Schema.decodeUnknownEither(Schema.Array(Controller))
const decodeManifests = Schema.decodeUnknownEither(Schema.Array(Manifest))
const decodeInstances = Schema.decodeUnknownEither(Schema.Array(Instance))
const decodeRuns = Schema.decodeUnknownEither(Schema.Array(RunFromRow))
const decodeAllocations = Schema.decodeUnknownEither(Schema.Array(Allocation))
const decodeStateRows = <S extends string>(state: Schema.Schema<S>) =>
  Schema.decodeUnknownEither(Schema.Array(Schema.Struct({ state })))
const decodeIdRows = Schema.decodeUnknownEither(Schema.Array(Schema.Struct({ id: Schema.String })))
const decodeMetaRows = Schema.decodeUnknownEither(
  Schema.Array(Schema.Struct({ value: Schema.String.pipe(Schema.pattern(/^[0-9a-z]{8}$/)) }))
)
const decodeOutputEnd = Schema.decodeUnknownEither(
  Schema.Array(Schema.Struct({ found: Schema.NullOr(Schema.Number), next: Schema.NullOr(Schema.Number) }))
)

// ---------------------------------------------------------------------------------------------
// Output

/** The offset just past the last byte stored for a stream (NULL when there is none). */
const streamEnd = (run: string, stream: string) =>
  `SELECT o."offset" + o.size FROM output AS o WHERE o.run_id = ${run} AND o.stream = ${stream} ` +
  `ORDER BY o."offset" DESC LIMIT 1`

/**
 * Stores the part of a chunk (run, stream, offset, size, encoding, bytes) that lies past the end
 * of its stream, and only when the chunk reaches the end (no gap) and the run exists. BLOB
 * `substr` counts bytes, so a plain chunk that overlaps the end is cut to its new part; a
 * compressed one cannot be cut, so it is stored only when it starts exactly at the end (the
 * caller then sends the new part plain).
 */
const appendStatement =
  "WITH chunk (run_id, stream, start, size, encoding, data) AS (VALUES (?, ?, ?, ?, ?, ?)), " +
  `tail (next) AS MATERIALIZED (SELECT coalesce((${streamEnd("chunk.run_id", "chunk.stream")}), 0) FROM chunk) ` +
  'INSERT INTO output (run_id, stream, "offset", size, encoding, data) ' +
  "SELECT chunk.run_id, chunk.stream, tail.next, chunk.start + chunk.size - tail.next, chunk.encoding, " +
  "CASE WHEN chunk.start = tail.next THEN chunk.data ELSE substr(chunk.data, tail.next - chunk.start + 1) END " +
  "FROM chunk, tail " +
  "WHERE chunk.start + chunk.size > tail.next " +
  "AND (chunk.start = tail.next OR (chunk.encoding = 'identity' AND chunk.start < tail.next)) " +
  "AND EXISTS (SELECT 1 FROM runs WHERE runs.id = chunk.run_id) " +
  'RETURNING seq, "offset" + size AS next'

const decodeNextRows = Schema.decodeUnknownEither(Schema.Array(Schema.Struct({ seq: Schema.Number, next: Schema.Number })))

/** How much inflated output a store keeps for readers in its process (see RecentChunks). */
const RECENT_OUTPUT_BYTES = 16 * 1024 * 1024

// ---------------------------------------------------------------------------------------------
// Transitions

interface Entity<S extends string, A> {
  readonly table: string
  readonly columns: string
  readonly machine: StateMachine<S>
  readonly decodeStates: (rows: unknown) => Effect.Effect<ReadonlyArray<{ readonly state: S }>, ParseResult.ParseError>
  readonly decodeRows: (rows: unknown) => Effect.Effect<ReadonlyArray<A>, ParseResult.ParseError>
}

const instanceEntity: Entity<InstanceState, Instance> = {
  table: "instances",
  columns: instanceColumns,
  machine: InstanceMachine,
  decodeStates: decodeStateRows(InstanceState),
  decodeRows: decodeInstances
}
const runEntity: Entity<RunState, Run> = {
  table: "runs",
  columns: runColumns,
  machine: RunMachine,
  decodeStates: decodeStateRows(RunState),
  decodeRows: decodeRuns
}
const allocationEntity: Entity<AllocationState, Allocation> = {
  table: "allocations",
  columns: allocationColumns,
  machine: AllocationMachine,
  decodeStates: decodeStateRows(AllocationState),
  decodeRows: decodeAllocations
}
const manifestEntity: Entity<ManifestState, Manifest> = {
  table: "manifests",
  columns: manifestColumns,
  machine: ManifestMachine,
  decodeStates: decodeStateRows(ManifestState),
  decodeRows: decodeManifests
}

type Assignment = readonly [column: string, value: unknown]

const instancePatchColumns: ReadonlyArray<readonly [keyof InstancePatch, string]> = [
  ["providerRef", "provider_ref"],
  ["region", "region"],
  ["error", "error"]
]
const runPatchColumns: ReadonlyArray<readonly [keyof RunPatch, string]> = [
  ["exitCode", "exit_code"],
  ["signal", "signal"],
  ["error", "error"],
  ["startedAt", "started_at"],
  ["endedAt", "ended_at"]
]

/** Only the fields present in a patch are written: absent means "leave as is", null clears. */
const assignmentsOf = <P extends object>(
  patch: P | undefined,
  columns: ReadonlyArray<readonly [keyof P, string]>
): Array<Assignment> => {
  const out: Array<Assignment> = []
  if (patch === undefined) return out
  for (const [key, column] of columns) {
    const value = patch[key]
    if (value !== undefined) out.push([column, value])
  }
  return out
}

/**
 * How many times a conditional write that missed is tried again when the read that follows
 * shows the record (or the stream) changed in between, before it counts as contended.
 */
const CAS_ATTEMPTS = 16

const notFound = (operation: string, what: string, id: string) =>
  new StoreError({ operation, reason: "not-found", message: `${operation}: no ${what} with id "${id}"` })

const refused = (operation: string, message: string) =>
  new StoreError({ operation, reason: "constraint", message: `${operation}: ${message}` })

const isCount = (n: number): boolean => Number.isSafeInteger(n) && n >= 0

const bindSlots = (n: number): string => Array.from({ length: n }, () => "?").join(", ")

/**
 * The store on a `SqlClient` for SQLite made for it alone: it holds the client's connection
 * until the scope closes (connection.ts), so nothing else can use the client meanwhile. Brings
 * the schema up to date and settles the control id, then returns the service.
 */
export const make = (options: MakeOptions): Effect.Effect<StoreService, StoreError, SqlClient | Scope.Scope> =>
  Effect.gen(function* () {
    const db = yield* Effect.flatMap(SqlClient, hold).pipe(openAttempt)
    const { query, writeTransaction } = db

    const recentOutput = new RecentChunks(RECENT_OUTPUT_BYTES)
    const decodeChunks = Schema.decodeUnknownEither(Schema.Array(outputChunkFromRow(recentOutput)))

    /** Every public operation: typed errors, and lock contention waited out rather than reported. */
    // A file damaged past its header opens fine and fails later, on the page that is bad: a
    // driver's failure is explained (the file named) wherever it comes.
    const named = options.filename === undefined || options.filename === null ? undefined : explainFailure(options.filename)
    const operation =
      (name: string) =>
      <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, Mapped<E>> =>
        retryBusy(mapStoreErrors(name, named)(effect))

    // -------------------------------------------------------------------------------------------
    // Open: schema and control id, once per process, under the write lock so that two processes
    // opening a new file at once agree on both.

    const settleControlId = writeTransaction(
      Effect.gen(function* () {
        yield* migrate(db)
        const [stored] = yield* Effect.flatMap(
          db.unprepared("SELECT value FROM meta WHERE key = 'control_id'"),
          decodeMetaRows
        )
        if (stored !== undefined) return stored.value
        const remembered =
          options.controlIdFile === null ? Option.none<string>() : yield* readControlIdFile(options.controlIdFile)
        const controlId = Option.getOrElse(remembered, newControlId)
        yield* db.unprepared("INSERT INTO meta (key, value) VALUES ('control_id', ?)", [controlId])
        return controlId
      })
    )

    // Every open but a file's first finds both already settled, and reading them needs no write
    // lock; taking it (BEGIN IMMEDIATE, COMMIT) would be a good part of a short command's cost.
    // What the read sees is committed, so settling again under the lock would find the same.
    const alreadySettled = Effect.gen(function* () {
      if ((yield* schemaVersion(db)) !== latestVersion) return Option.none<string>()
      const [stored] = yield* Effect.flatMap(db.unprepared("SELECT value FROM meta WHERE key = 'control_id'"), decodeMetaRows)
      return Option.fromNullable(stored?.value)
    })

    const controlId = yield* alreadySettled.pipe(
      Effect.flatMap(Option.match({ onSome: Effect.succeed, onNone: () => settleControlId })),
      openAttempt,
      retryBusy
    )
    if (options.controlIdFile !== null) {
      const file = options.controlIdFile
      const copy = yield* readControlIdFile(file).pipe(Effect.orElseSucceed(Option.none<string>))
      // The database is the authority; the file only mirrors it.
      if (!Option.contains(copy, controlId)) yield* writeControlIdFile(file, controlId)
    }

    // -------------------------------------------------------------------------------------------
    // Shared pieces

    /** The statement of each kind of transition, built once: transitions are the hot path. */
    const casStatements = new Map<string, { readonly update: string; readonly sources: ReadonlyArray<string> }>()

    const selectOne = <A>(
      text: string,
      id: string,
      decode: (rows: unknown) => Effect.Effect<ReadonlyArray<A>, ParseResult.ParseError>
    ): Effect.Effect<Option.Option<A>, Failure> =>
      Effect.map(Effect.flatMap(query(text, [id]), decode), (rows) => Option.fromNullable(rows[0]))

    /**
     * A compare-and-set in one statement: the UPDATE applies only while the record is in a state
     * from which the machine allows `to`, so of two writers moving it out of the same state
     * exactly one succeeds, and a legal move costs one round trip. When nothing was updated, the
     * state is read and judged by the machine, which names the illegal move; should that state
     * allow the move after all, another writer moved the record in between, and it is tried again.
     */
    const transition = <S extends string, A>(
      entity: Entity<S, A>,
      name: string,
      id: string,
      to: S,
      assignments: ReadonlyArray<Assignment>
    ): Effect.Effect<A, Failure | IllegalTransition> => {
      const columns = assignments.map(([column]) => column)
      const key = `${entity.table} ${to} ${columns.join(" ")}`
      let cas = casStatements.get(key)
      if (cas === undefined) {
        const sources = entity.machine.states.filter((from) => entity.machine.canTransition(from, to))
        cas = {
          sources,
          update:
            `UPDATE ${entity.table} SET state = ?${columns.map((column) => `, ${column} = ?`).join("")} ` +
            `WHERE id = ? AND state IN (${bindSlots(sources.length)}) RETURNING ${entity.columns}`
        }
        casStatements.set(key, cas)
      }
      const { sources, update } = cas
      const params = [to, ...assignments.map(([, value]) => value), id, ...sources]
      const select = `SELECT state FROM ${entity.table} WHERE id = ?`
      const explain = (remaining: number): Effect.Effect<A, Failure | IllegalTransition> =>
        Effect.gen(function* () {
          const [current] = yield* Effect.flatMap(query(select, [id]), entity.decodeStates)
          if (current === undefined) return yield* notFound(name, entity.machine.entity, id)
          yield* entity.machine.transition(id, current.state, to)
          if (remaining <= 1) {
            return yield* new StoreError({
              operation: name,
              reason: "busy",
              message: `${name}: ${entity.machine.entity} "${id}" kept changing state under concurrent writers`
            })
          }
          return yield* attempt(remaining - 1)
        })
      const attempt = (remaining: number): Effect.Effect<A, Failure | IllegalTransition> =>
        sources.length === 0
          ? explain(remaining)
          : Effect.flatMap(Effect.flatMap(query(update, params), entity.decodeRows), (rows) =>
              rows[0] !== undefined ? Effect.succeed(rows[0]) : explain(remaining)
            )
      return attempt(CAS_ATTEMPTS)
    }

    // -------------------------------------------------------------------------------------------
    // Controllers

    const upsertController: StoreService["upsertController"] = (c) =>
      operation("upsertController")(
        query(
          "INSERT INTO controllers (id, pid, hostname, hub_url, secret, started_at, lease_expires_at) " +
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, " +
            "hostname = excluded.hostname, hub_url = excluded.hub_url, secret = excluded.secret, " +
            "started_at = excluded.started_at, lease_expires_at = excluded.lease_expires_at",
          [c.id, c.pid, c.hostname, c.hubUrl, c.secret, c.startedAt, c.leaseExpiresAt]
        ).pipe(Effect.asVoid)
      )

    const getController: StoreService["getController"] = (id) =>
      operation("getController")(
        selectOne(`SELECT ${controllerColumns} FROM controllers WHERE id = ?`, id, decodeControllers)
      )

    const removeController: StoreService["removeController"] = (id) =>
      operation("removeController")(query("DELETE FROM controllers WHERE id = ?", [id]).pipe(Effect.asVoid))

    const listControllers: StoreService["listControllers"] = operation("listControllers")(
      Effect.flatMap(query(`SELECT ${controllerColumns} FROM controllers ORDER BY started_at, id`, []), decodeControllers)
    )

    const removeIdleController: StoreService["removeIdleController"] = (id) =>
      operation("removeIdleController")(
        Effect.map(
          Effect.flatMap(
            query(
              "DELETE FROM controllers WHERE id = ? AND NOT EXISTS " +
                "(SELECT 1 FROM instances WHERE owner_controller_id = ? AND state <> 'terminated') RETURNING id",
              [id, id]
            ),
            decodeIdRows
          ),
          (rows) => rows.length > 0
        )
      )

    const renewLeases: StoreService["renewLeases"] = (controllerId, expiresAt) =>
      operation("renewLeases")(
        writeTransaction(
          Effect.gen(function* () {
            const renewed = yield* Effect.flatMap(
              query("UPDATE controllers SET lease_expires_at = ? WHERE id = ? RETURNING id", [expiresAt, controllerId]),
              decodeIdRows
            )
            if (renewed.length === 0) return yield* notFound("renewLeases", "controller", controllerId)
            yield* query(
              "UPDATE instances SET lease_expires_at = ? WHERE owner_controller_id = ? AND state <> 'terminated'",
              [expiresAt, controllerId]
            )
          })
        )
      )

    // -------------------------------------------------------------------------------------------
    // Launches and manifests

    const createLaunch: StoreService["createLaunch"] = (manifest, instance, run) =>
      operation("createLaunch")(
        Effect.gen(function* () {
          // Write-ahead intent: a launch is recorded before anything exists, never after.
          if (manifest.state !== "open" || instance.state !== "requested" || run.state !== "pending") {
            return yield* refused(
              "createLaunch",
              `a launch starts as manifest "open", instance "requested", run "pending" (got "${manifest.state}", "${instance.state}", "${run.state}")`
            )
          }
          yield* writeTransaction(
            Effect.all(
              [
                query("INSERT INTO manifests (id, controller_id, state, created_at) VALUES (?, ?, ?, ?)", [
                  manifest.id,
                  manifest.controllerId,
                  manifest.state,
                  manifest.createdAt
                ]),
                query(
                  "INSERT INTO instances (id, name, manifest_id, provider, spec, region, provider_ref, state, " +
                    "owner_controller_id, lease_expires_at, agent_token, error, created_at, updated_at) " +
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  [
                    instance.id,
                    instance.name,
                    instance.manifestId,
                    instance.provider,
                    instance.spec,
                    instance.region,
                    instance.providerRef,
                    instance.state,
                    instance.ownerControllerId,
                    instance.leaseExpiresAt,
                    instance.agentToken,
                    instance.error,
                    instance.createdAt,
                    instance.updatedAt
                  ]
                ),
                query(
                  "INSERT INTO runs (id, manifest_id, instance_id, provider, command, env, workdir, max_duration_ms, " +
                    "state, exit_code, signal, error, owner_controller_id, created_at, started_at, ended_at) " +
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  [
                    run.id,
                    run.manifestId,
                    run.instanceId,
                    run.provider,
                    run.command,
                    JSON.stringify(run.env),
                    run.workdir,
                    run.maxDurationMs,
                    run.state,
                    run.exitCode,
                    run.signal,
                    run.error,
                    run.ownerControllerId,
                    run.createdAt,
                    run.startedAt,
                    run.endedAt
                  ]
                )
              ],
              { discard: true }
            )
          )
        })
      )

    const closeManifest: StoreService["closeManifest"] = (id) =>
      operation("closeManifest")(
        transition(manifestEntity, "closeManifest", id, "closed", []).pipe(
          // Closing is idempotent: the only illegal move to "closed" is from "closed" itself.
          Effect.catchTag("IllegalTransition", () => Effect.void),
          Effect.asVoid
        )
      )

    const getManifest: StoreService["getManifest"] = (id) =>
      operation("getManifest")(selectOne(`SELECT ${manifestColumns} FROM manifests WHERE id = ?`, id, decodeManifests))

    // -------------------------------------------------------------------------------------------
    // Instances

    const getInstance: StoreService["getInstance"] = (id) =>
      operation("getInstance")(selectOne(`SELECT ${instanceColumns} FROM instances WHERE id = ?`, id, decodeInstances))

    const getInstanceByName: StoreService["getInstanceByName"] = (name) =>
      operation("getInstanceByName")(
        selectOne(`SELECT ${instanceColumns} FROM instances WHERE name = ?`, name, decodeInstances)
      )

    const listInstances: StoreService["listInstances"] = (filter = {}) =>
      operation("listInstances")(
        Effect.suspend((): Effect.Effect<ReadonlyArray<Instance>, Failure> => {
          if (filter.states !== undefined && filter.states.length === 0) return Effect.succeed([])
          const [sql, params] = instancesQuery(instanceColumns, filter)
          return Effect.flatMap(query(sql, params), decodeInstances)
        })
      )

    const transitionInstance: StoreService["transitionInstance"] = (id, to, patch) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        operation("transitionInstance")(
          transition(instanceEntity, "transitionInstance", id, to, [
            ...assignmentsOf(patch, instancePatchColumns),
            ["updated_at", now],
            // Only this move names the column: one that does not leaves the index of live
            // instances untouched (migration 3), so transitions stay one row write.
            ...(to === "terminated" ? [["terminated_at", now] as const] : [])
          ])
        )
      )

    const claimExpiredInstances: StoreService["claimExpiredInstances"] = (controllerId, now, leaseExpiresAt) =>
      Effect.flatMap(Clock.currentTimeMillis, (updatedAt) =>
        operation("claimExpiredInstances")(
          // One statement, so one write lock: a second reaper sees the new lease and skips.
          Effect.flatMap(
            query(
              "UPDATE instances SET owner_controller_id = ?, lease_expires_at = ?, updated_at = ? " +
                "WHERE state <> 'terminated' AND (lease_expires_at IS NULL OR lease_expires_at < ?) " +
                `RETURNING ${instanceColumns}`,
              [controllerId, leaseExpiresAt, updatedAt, now]
            ),
            decodeInstances
          )
        )
      )

    const claimInstance: StoreService["claimInstance"] = (id, controllerId, leaseExpiresAt) =>
      Effect.flatMap(Clock.currentTimeMillis, (updatedAt) =>
        operation("claimInstance")(
          Effect.gen(function* () {
            const [claimed] = yield* Effect.flatMap(
              query(
                "UPDATE instances SET owner_controller_id = ?, lease_expires_at = ?, updated_at = ? " +
                  `WHERE id = ? RETURNING ${instanceColumns}`,
                [controllerId, leaseExpiresAt, updatedAt, id]
              ),
              decodeInstances
            )
            if (claimed === undefined) return yield* notFound("claimInstance", "instance", id)
            return claimed
          })
        )
      )

    // -------------------------------------------------------------------------------------------
    // Allocations

    const createAllocation: StoreService["createAllocation"] = (a) =>
      operation("createAllocation")(
        query(
          "INSERT INTO allocations (id, instance_id, run_id, state, created_at, released_at) VALUES (?, ?, ?, ?, ?, ?)",
          [a.id, a.instanceId, a.runId, a.state, a.createdAt, a.releasedAt]
        ).pipe(Effect.asVoid)
      )

    const transitionAllocation: StoreService["transitionAllocation"] = (id, to, at) =>
      operation("transitionAllocation")(
        transition(allocationEntity, "transitionAllocation", id, to, to === "released" ? [["released_at", at]] : [])
      )

    const listAllocations: StoreService["listAllocations"] = (filter = {}) =>
      operation("listAllocations")(
        Effect.suspend((): Effect.Effect<ReadonlyArray<Allocation>, Failure> => {
          if (filter.states !== undefined && filter.states.length === 0) return Effect.succeed([])
          const conditions: Array<string> = []
          const params: Array<string> = []
          if (filter.states !== undefined) {
            conditions.push(`state IN (${bindSlots(filter.states.length)})`)
            params.push(...filter.states)
          }
          // allocations_instance serves this one; state has no index (see migrations.ts).
          if (filter.instanceId !== undefined) {
            conditions.push("instance_id = ?")
            params.push(filter.instanceId)
          }
          const where = conditions.length === 0 ? "" : ` WHERE ${conditions.join(" AND ")}`
          return Effect.flatMap(
            query(`SELECT ${allocationColumns} FROM allocations${where} ORDER BY created_at, id`, params),
            decodeAllocations
          )
        })
      )

    // -------------------------------------------------------------------------------------------
    // Runs

    const getRun: StoreService["getRun"] = (id) =>
      operation("getRun")(selectOne(`SELECT ${runColumns} FROM runs WHERE id = ?`, id, decodeRuns))

    const listRuns: StoreService["listRuns"] = (filter = {}) =>
      operation("listRuns")(
        Effect.suspend((): Effect.Effect<ReadonlyArray<Run>, Failure> => {
          if (filter.limit !== undefined && !isCount(filter.limit)) {
            return Effect.fail(refused("listRuns", `limit must be a non-negative integer, got ${filter.limit}`))
          }
          // SQLite reads a negative LIMIT as "no limit".
          const limit = filter.limit ?? -1
          if (filter.states === undefined) {
            return Effect.flatMap(
              query(`SELECT ${runColumns} FROM runs ORDER BY created_at DESC, id DESC LIMIT ?`, [limit]),
              decodeRuns
            )
          }
          if (filter.states.length === 0) return Effect.succeed([])
          return Effect.flatMap(
            query(
              `SELECT ${runColumns} FROM runs WHERE state IN (${bindSlots(filter.states.length)}) ` +
                "ORDER BY created_at DESC, id DESC LIMIT ?",
              [...filter.states, limit]
            ),
            decodeRuns
          )
        })
      )

    const listRunsForInstance: StoreService["listRunsForInstance"] = (instanceId) =>
      operation("listRunsForInstance")(
        Effect.flatMap(
          query(`SELECT ${runColumns} FROM runs WHERE instance_id = ? ORDER BY created_at DESC, id DESC`, [instanceId]),
          decodeRuns
        )
      )

    const transitionRun: StoreService["transitionRun"] = (id, to, patch) =>
      operation("transitionRun")(transition(runEntity, "transitionRun", id, to, assignmentsOf(patch, runPatchColumns)))

    // -------------------------------------------------------------------------------------------
    // Output

    /** Where a stream of a run continues (0 before any output); an unknown run is not found. */
    const endOf = (name: string, runId: string, stream: OutputStream): Effect.Effect<number, Failure> =>
      Effect.gen(function* () {
        const [end] = yield* Effect.flatMap(
          query(`SELECT (SELECT 1 FROM runs WHERE id = ?) AS found, (${streamEnd("?", "?")}) AS next`, [runId, runId, stream]),
          decodeOutputEnd
        )
        if (end === undefined || end.found === null) return yield* notFound(name, "run", runId)
        return end.next ?? 0
      })

    /**
     * One statement finds where the stream ends and writes only the bytes after that point, so
     * reading the end and writing after it cannot be split by another writer, and the write lock
     * is held for one statement rather than across several round trips. When it writes nothing,
     * a read says why: a resend, a gap, an unknown run, or a tail that moved in between (tried
     * again).
     */
    const appendOutput: StoreService["appendOutput"] = (runId, stream, offset, data, deflated) =>
      operation("appendOutput")(
        Effect.suspend((): Effect.Effect<number, Failure> => {
          if (!isCount(offset)) {
            return Effect.fail(refused("appendOutput", `offset must be a non-negative integer, got ${offset}`))
          }
          const explain = (remaining: number): Effect.Effect<number, Failure> =>
            Effect.gen(function* () {
              const next = yield* endOf("appendOutput", runId, stream)
              if (offset > next) {
                return yield* refused(
                  "appendOutput",
                  `${stream} of run "${runId}" continues at byte ${next}; a chunk at ${offset} would leave a gap`
                )
              }
              if (offset + data.length <= next) return next
              if (remaining <= 1) {
                return yield* new StoreError({
                  operation: "appendOutput",
                  reason: "busy",
                  message: `appendOutput: ${stream} of run "${runId}" kept growing under concurrent writers`
                })
              }
              return yield* attempt(remaining - 1, undefined)
            })
          // Compressed bytes only for a first try that starts at the stream's end; a retry, or a
          // chunk that overlaps what is stored, goes plain (see appendStatement).
          const attempt = (remaining: number, packed: Uint8Array | undefined): Effect.Effect<number, Failure> =>
            data.length === 0
              ? explain(remaining)
              : Effect.flatMap(
                  Effect.flatMap(
                    query(appendStatement, [runId, stream, offset, data.length, packed === undefined ? "identity" : "deflate", packed ?? data]),
                    decodeNextRows
                  ),
                  (rows) => {
                    const [row] = rows
                    if (row === undefined) return explain(remaining)
                    // A compressed chunk is stored whole at `offset`: its readers here can have
                    // the bytes the caller already holds.
                    if (packed !== undefined) recentOutput.remember(row.seq, runId, stream, offset, data)
                    return Effect.succeed(row.next)
                  }
                )
          return attempt(CAS_ATTEMPTS, deflated !== undefined && deflated.length > 0 && deflated.length < data.length ? deflated : undefined)
        })
      )

    const outputEnd: StoreService["outputEnd"] = (runId, stream) => operation("outputEnd")(endOf("outputEnd", runId, stream))

    const readOutput: StoreService["readOutput"] = (runId, afterSeq, limit) =>
      operation("readOutput")(
        Effect.suspend((): Effect.Effect<ReadonlyArray<OutputChunk>, Failure> => {
          if (!isCount(limit)) {
            return Effect.fail(refused("readOutput", `limit must be a non-negative integer, got ${limit}`))
          }
          return Effect.flatMap(
            query(`SELECT ${outputColumns} FROM output WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?`, [
              runId,
              afterSeq,
              limit
            ]),
            decodeChunks
          )
        })
      )

    return {
      controlId,
      upsertController,
      getController,
      removeController,
      listControllers,
      removeIdleController,
      renewLeases,
      createLaunch,
      closeManifest,
      getManifest,
      getInstance,
      getInstanceByName,
      listInstances,
      transitionInstance,
      claimExpiredInstances,
      claimInstance,
      createAllocation,
      transitionAllocation,
      listAllocations,
      getRun,
      listRuns,
      listRunsForInstance,
      transitionRun,
      appendOutput,
      outputEnd,
      readOutput
    } satisfies StoreService
  })

const isMemory = (filename: string): boolean => filename === ":memory:"

/**
 * The options as given, from code that may not be typed. SQLite reads a filename of "" as a
 * private temporary database, so an empty variable would silently lose every record when the
 * process ends (and with them what the sweep needs to find live instances): it is refused, and
 * `:memory:` is the way to ask for a store that does not last.
 */
const SqliteStoreOptionsSchema = Schema.Struct({
  filename: Schema.String.pipe(
    Schema.filter((name) => name.length > 0 || "is empty (use \":memory:\" for a store that is not kept)"),
    Schema.filter((name) => !name.includes("\0") || "contains a NUL character")
  )
})

const decodeOptions = (options: unknown): Effect.Effect<SqliteStoreOptions, StoreError> => {
  // `new String("x")` was refused as "filename: Expected string, actual x".
  const boxed = boxedPrimitiveProblem(options, "SqliteStore options", "SqliteStore options: ")
  if (boxed !== null) return Effect.fail(new StoreError({ operation: "open", reason: "options", message: boxed }))
  return Schema.decodeUnknown(SqliteStoreOptionsSchema)(options).pipe(
    Effect.mapError(
      (error) =>
        new StoreError({ operation: "open", reason: "options", message: `SqliteStore options: ${describeParseError(error)}`, cause: error })
    ),
    Effect.flatMap((decoded) => {
      // Measured once: the measure walks the path's links on disk.
      const bytes = isMemory(decoded.filename) ? 0 : pathBytes(decoded.filename)
      return bytes <= MAX_PATH_BYTES
        ? Effect.succeed(decoded)
        : Effect.fail(
            new StoreError({
              operation: "open",
              reason: "options",
              // SQLite's own word for it is SQLITE_CANTOPEN, the same as for a missing directory.
              message: `SqliteStore options: filename is ${bytes} bytes long (with symbolic links resolved), and SQLite opens no database whose path is over ${MAX_PATH_BYTES} bytes`
            })
          )
    })
  )
}

export { MAX_PATH_BYTES, pathBytes }

const ensureDirectory = (filename: string): Effect.Effect<void, StoreError> => {
  const directory = dirname(filename)
  return Effect.try({
    // Owner-only: the state home holds controller secrets and agent tokens.
    try: () => void mkdirSync(directory, { recursive: true, mode: 0o700 }),
    catch: (cause) =>
      new StoreError({
        operation: "open",
        reason: "io",
        message: `open: ${directoryProblem(filename, directory) ?? `cannot create ${directory} to hold ${filename}: ${describeCause(cause)}`}`,
        cause
      })
  })
}

/** A store on the SQLite file `filename`, open for the life of the scope. */
export const makeScoped = (given: SqliteStoreOptions): Effect.Effect<StoreService, StoreError, Scope.Scope> =>
  Effect.flatMap(decodeOptions(given), (options) =>
    Effect.gen(function* () {
      const memory = isMemory(options.filename)
      if (!memory) yield* ensureDirectory(options.filename)
      const sql = yield* makeClient(options.filename)
      return yield* Effect.provideService(
        make({
          controlIdFile: memory ? null : join(dirname(options.filename), CONTROL_ID_FILE),
          filename: memory ? null : options.filename
        }),
        SqlClient,
        sql
      )
    }).pipe(Effect.mapError((error) => (isMemory(options.filename) ? error : explainFailure(options.filename)(error))))
  )

/** A failure that a user must act on, with the file named (and for a damaged one, what to do). */
const explainFailure =
  (filename: string) =>
  (error: StoreError): StoreError => {
    if (error.message.includes(filename)) return error
    const code = driverCode(error) ?? ""
    if (/^SQLITE_(NOTADB|CORRUPT)/.test(code)) return damaged(filename, error)
    if (code === "SQLITE_FULL") return explained(error, `the disk holding ${filename} is full; free some space on it`)
    if (error.reason !== "io") return error
    // Only what SQLite could not open or write is looked into: the file system is read then.
    const problem = /^SQLITE_(CANTOPEN|READONLY|IOERR|PERM)/.test(code) ? fileProblem(filename) : null
    // Otherwise the file is named, as SQLite does not.
    return problem === null ? withFile(filename, error) : explained(error, problem)
  }

/** `error` with what is wrong and what to do after SQLite's words, which are kept. */
const explained = (error: StoreError, problem: string): StoreError =>
  new StoreError({ operation: error.operation, reason: error.reason, message: `${error.message}: ${problem}`, cause: error })

const withFile = (filename: string, error: StoreError): StoreError =>
  new StoreError({ operation: error.operation, reason: error.reason, message: `${error.message} (${filename})`, cause: error })

/**
 * A file SQLite cannot read as a database says what to do about it: nothing else in the state
 * home depends on it, and the sweep finds live instances without it. (Not a store of a newer
 * schema, also refused as corrupt: that one is fine, and moving it aside would lose it.)
 */
const damaged = (filename: string, error: StoreError): StoreError =>
  new StoreError({
    operation: error.operation,
    reason: error.reason,
    message: `${error.message}: ${filename} is damaged; move it aside (a new store is made, and \`repl orphans\` then finds every live instance as untracked)`,
    cause: error
  })

/** The `Store` on the SQLite file `filename` (its directory is created if missing). */
export const layer = (options: SqliteStoreOptions): Layer.Layer<Store, StoreError> =>
  Layer.scoped(Store, makeScoped(options))

/**
 * The `Store` of a state home: `${home}/state.db`, with the control id copy beside it. Without
 * a home, `$SKYREPL_HOME` or `~/.repl`, as the CLI uses.
 */
export const layerFromHome = (home?: string): Layer.Layer<Store, StoreError> => {
  // From plain JavaScript (or behind a cast) the home can be anything: a number or an object
  // threw Node's TypeError from `join` as the layer was made, and "" put `state.db` in the
  // current directory, as an empty SKYREPL_HOME did.
  if (home !== undefined && (typeof home !== "string" || home.trim() === "")) {
    // A boxed string printed as the path it holds, as if it had been one.
    const shown = boxedShown(home) ?? JSON.stringify(home) ?? String(home)
    const what = typeof home === "string" ? EMPTY_SETTING : `must be a path, not ${shown}`
    return Layer.fail(new StoreError({ operation: "open", reason: "options", message: `SqliteStore.layerFromHome: the home ${what}` }))
  }
  const fromEnv = process.env["SKYREPL_HOME"]
  // Set but empty is refused, as for every SKYREPL_* variable: it made `state.db` in the
  // current directory, a store no other process of this home would find.
  if (home === undefined && fromEnv !== undefined && fromEnv.trim() === "") {
    return Layer.fail(new StoreError({ operation: "open", reason: "options", message: `SKYREPL_HOME: ${EMPTY_SETTING}` }))
  }
  return layer({ filename: join(home ?? fromEnv ?? join(homedir(), ".repl"), "state.db") })
}
