/**
 * B5's measuring process, on Bun or Node (each runtime has its own SQLite driver).
 *
 * BENCH_MODE=single: state transitions per second through the store (instances moving
 * ready ⇄ allocated, one compare-and-set each, awaited one by one), against raw INSERTs through
 * the same driver and connection settings (the store's own SqlClient, no store logic). Each is
 * timed in rounds after a warm-up pass, as a long-running controller runs them: the first pass
 * (cold JIT) is reported on its own.
 *
 * BENCH_MODE=contend: one of several processes on the same file; transitions and output
 * appends on records of its own, counting every operation that failed.
 */
import { SqliteStore } from "@skyrepl/store-sqlite"
import { Effect, Exit } from "effect"
import { join } from "node:path"
import { makeClient } from "../../packages/store-sqlite/src/client.ts"
import { hold } from "../../packages/store-sqlite/src/connection.ts"
import { now } from "../harness.ts"
import { seedLaunches } from "../seed.ts"

const home = process.env["BENCH_HOME"] ?? ""
if (home === "") throw new Error("BENCH_HOME is required")
const mode = process.env["BENCH_MODE"] ?? "single"
const count = Number(process.env["BENCH_OPS"] ?? "2000")
const records = 50
/** Single mode: a cold pass of a tenth, then five timed rounds of a fifth each. */
const rounds = 5
const warmup = Math.max(1, Math.floor(count / 10))
const perRound = Math.max(1, Math.floor(count / rounds))

const transitions = (filename: string) =>
  Effect.scoped(
    Effect.gen(function* () {
      const store = yield* SqliteStore.makeScoped({ filename })
      const names = yield* seedLaunches(store, { count: records, leaseExpiresAt: Date.now() + 3_600_000 })
      const mine = (yield* store.listInstances()).filter((i) => names.includes(i.name))
      for (const instance of mine) {
        for (const to of ["spawning", "booting", "ready"] as const) yield* store.transitionInstance(instance.id, to)
      }
      const runs = yield* store.listRuns()
      const myRuns = runs.filter((r) => mine.some((i) => i.id === r.instanceId))
      const allocated = new Set<string>()
      let errors = 0
      const firstError: Array<string> = []
      const step = (i: number) =>
        Effect.gen(function* () {
          const instance = mine[i % mine.length]!
          const to = allocated.has(instance.id) ? "ready" : "allocated"
          const exit = yield* Effect.exit(store.transitionInstance(instance.id, to))
          if (Exit.isSuccess(exit)) {
            if (to === "allocated") allocated.add(instance.id)
            else allocated.delete(instance.id)
          } else {
            errors++
            if (firstError.length === 0) firstError.push(String(exit.cause).slice(0, 300))
          }
          if (mode === "contend" && i % 10 === 0) {
            const run = myRuns[i % myRuns.length]!
            const end = yield* store.readOutput(run.id, 0, 1_000_000).pipe(Effect.map((cs) => cs.reduce((n, c) => (c.stream === "stdout" ? Math.max(n, c.offset + c.data.length) : n), 0)))
            const appended = yield* Effect.exit(store.appendOutput(run.id, "stdout", end, new TextEncoder().encode(`line ${i}\n`)))
            if (Exit.isFailure(appended)) {
              errors++
              if (firstError.length === 0) firstError.push(String(appended.cause).slice(0, 300))
            }
          }
        })
      const timed = (from: number, n: number) =>
        Effect.gen(function* () {
          const start = now()
          for (let i = from; i < from + n; i++) yield* step(i)
          return now() - start
        })
      if (mode === "contend") {
        const ms = yield* timed(0, count)
        return { ms, coldMs: ms, roundMs: [ms], cpuMs: 0, errors, firstError: firstError[0] ?? null }
      }
      const coldMs = yield* timed(0, warmup)
      const cpu = process.cpuUsage()
      const roundMs: Array<number> = []
      for (let r = 0; r < rounds; r++) roundMs.push(yield* timed(warmup + r * perRound, perRound))
      const used = process.cpuUsage(cpu)
      const ms = roundMs.reduce((a, b) => a + b, 0)
      return { ms, coldMs, roundMs, cpuMs: (used.user + used.system) / 1000, errors, firstError: firstError[0] ?? null }
    })
  )

const rawInserts = (filename: string) =>
  Effect.scoped(
    Effect.gen(function* () {
      // The connection as the store holds it (connection.ts): statements go to the driver with
      // no store logic around them.
      const db = yield* hold(yield* makeClient(filename))
      yield* db.query("CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, state TEXT NOT NULL, at INTEGER NOT NULL)")
      const insert = (n: number) =>
        Effect.gen(function* () {
          const start = now()
          for (let i = 0; i < n; i++) yield* db.query("INSERT INTO raw (state, at) VALUES (?, ?)", [i % 2 === 0 ? "ready" : "allocated", i])
          return now() - start
        })
      // The cost of a statement itself, with SQLite doing next to nothing.
      const select = (n: number) =>
        Effect.gen(function* () {
          const start = now()
          for (let i = 0; i < n; i++) yield* db.query("SELECT 1")
          return now() - start
        })
      yield* insert(warmup)
      yield* select(warmup)
      const insertMs: Array<number> = []
      const selectMs: Array<number> = []
      for (let r = 0; r < rounds; r++) {
        insertMs.push(yield* insert(perRound))
        selectMs.push(yield* select(perRound))
      }
      return { insertMs, selectMs }
    })
  )

const main = Effect.gen(function* () {
  if (mode === "contend") {
    const r = yield* transitions(join(home, "state.db"))
    return { ops: count, ms: r.ms, errors: r.errors, firstError: r.firstError }
  }
  const raw = yield* rawInserts(join(home, "raw.db"))
  const t = yield* transitions(join(home, "state.db"))
  return {
    warmupOps: warmup,
    roundOps: perRound,
    rawMs: raw.insertMs,
    selectMs: raw.selectMs,
    coldMs: t.coldMs,
    roundMs: t.roundMs,
    cpuMs: t.cpuMs,
    errors: t.errors,
    firstError: t.firstError
  }
})

const result = await Effect.runPromise(main)
process.stdout.write(JSON.stringify({ runtime: process.versions["bun"] !== undefined ? `bun ${process.versions["bun"]}` : `node ${process.versions.node}`, ...result }) + "\n")
process.exit(0)
