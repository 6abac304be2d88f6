/**
 * B5: the store. Transitions per second in one process (Bun and Node, each on its own SQLite
 * driver) against raw INSERTs through the same driver; then 8 processes writing to one file at
 * once, which must see zero errors.
 */
import { Schema } from "effect"
import { join } from "node:path"
import { type Benchmark, bunBin, type Figure, finishHome, lastJsonLine, type Ratio, repoRoot, scratchHome, stats, timeOk, timeProcess, viteNodeBin } from "./harness.ts"

const Single = Schema.Struct({
  runtime: Schema.String,
  warmupOps: Schema.Number,
  roundOps: Schema.Number,
  rawMs: Schema.Array(Schema.Number),
  selectMs: Schema.Array(Schema.Number),
  coldMs: Schema.Number,
  roundMs: Schema.Array(Schema.Number),
  cpuMs: Schema.Number,
  errors: Schema.Number,
  firstError: Schema.NullOr(Schema.String)
})
const Contender = Schema.Struct({
  runtime: Schema.String,
  ops: Schema.Number,
  ms: Schema.Number,
  errors: Schema.Number,
  firstError: Schema.NullOr(Schema.String)
})

const worker = join(repoRoot, "bench", "workers", "store.ts")

export const b5: Benchmark = {
  id: "B5",
  title: "Store: transitions per second, and 8 writers at once",
  run: async (ctx) => {
    const ops = ctx.smoke ? 200 : 20_000
    const figures: Array<Figure> = []
    const ratios: Array<Ratio> = []
    const notes: Array<string> = []
    for (const runtime of ["bun", "node"] as const) {
      const home = scratchHome(`b5-${runtime}`)
      try {
        const [file, args] = runtime === "bun" ? [bunBin, [worker]] : [viteNodeBin, [worker]]
        const out = await timeOk(file, args, { env: { ...process.env, BENCH_HOME: home, BENCH_MODE: "single", BENCH_OPS: String(ops) }, cwd: repoRoot })
        const r = Schema.decodeUnknownSync(Single)(lastJsonLine(out.stdout))
        // Rounds are timed in ms; a round's rate is ops per second. The median round is the
        // figure; the slowest round is the "p99" (with five rounds, the worst one).
        const rates = (ms: ReadonlyArray<number>) => ms.map((m) => (r.roundOps / m) * 1000)
        const rateFigure = (what: string, unit: string, ms: ReadonlyArray<number>): Figure => {
          const s = stats(rates(ms))
          return { what, unit, stats: { ...s, p99: s.min } }
        }
        const transitionRate = stats(rates(r.roundMs)).median
        const insertRate = stats(rates(r.rawMs)).median
        const timedOps = r.roundOps * r.roundMs.length
        figures.push(
          rateFigure(`${r.runtime}: raw INSERTs through the same driver (autocommit, one by one; per round, p99 = slowest round)`, "ops/s", r.rawMs),
          rateFigure(`${r.runtime}: \`SELECT 1\` through the same connection (the cost of a statement itself)`, "ops/s", r.selectMs),
          rateFigure(`${r.runtime}: store transitions (compare-and-set, one by one; per round, p99 = slowest round)`, "transitions/s", r.roundMs),
          { what: `${r.runtime}: store transitions, first ${r.warmupOps} (cold: the JIT still compiling)`, unit: "transitions/s", value: (r.warmupOps / r.coldMs) * 1000 },
          {
            what: `${r.runtime}: store transitions per second of this process's CPU time (what they cost, whatever else the machine runs)`,
            unit: "transitions/CPU-s",
            value: (timedOps / r.cpuMs) * 1000
          }
        )
        ratios.push(
          { what: `${r.runtime}: transitions / raw inserts (median rounds)`, value: transitionRate / insertRate, target: "(reported)", met: null },
          { what: `${r.runtime}: transitions per second, one process (median round)`, value: transitionRate, unit: "/s", target: "≥ 20,000/s", met: transitionRate >= 20_000 }
        )
        if (r.errors > 0) notes.push(`${r.runtime}: ${r.errors} single-process errors, first: ${r.firstError}`)
      } finally {
        finishHome(home)
      }
    }

    const writers = 8
    const each = ctx.smoke ? 50 : 2_000
    const home = scratchHome("b5-contend")
    try {
      const start = performance.now()
      const results = await Promise.all(
        Array.from({ length: writers }, () =>
          timeProcess(bunBin, [worker], { env: { ...process.env, BENCH_HOME: home, BENCH_MODE: "contend", BENCH_OPS: String(each) }, cwd: repoRoot })
        )
      )
      const wall = performance.now() - start
      let errors = 0
      let crashed = 0
      let totalOps = 0
      for (const t of results) {
        if (t.code !== 0) {
          crashed++
          notes.push(`a writer exited ${t.code}: ${t.stderr.trim().split("\n").slice(-3).join(" / ")}`)
          continue
        }
        const r = Schema.decodeUnknownSync(Contender)(lastJsonLine(t.stdout))
        errors += r.errors
        totalOps += r.ops + Math.ceil(r.ops / 10)
        if (r.firstError !== null) notes.push(`a writer's first error: ${r.firstError}`)
      }
      figures.push({
        what: `${writers} processes at once (bun), transitions + output appends, including each process's start-up`,
        unit: "ops/s",
        value: (totalOps / wall) * 1000
      })
      ratios.push({
        what: `${writers} writers: failed operations (+ crashed processes)`,
        value: errors + crashed,
        target: "0",
        unit: "",
        met: errors + crashed === 0
      })
    } finally {
      finishHome(home)
    }
    notes.push(
      `Single process: ${ctx.smoke ? 20 : 2_000} transitions first (reported as the cold figure), then five rounds of ${ctx.smoke ? 40 : 4_000}, each timed; the same for the raw INSERTs and \`SELECT 1\`.`
    )
    notes.push("Each process opens the shared file itself (schema and control id settled under the write lock), seeds its own records, then writes.")
    return {
      id: "B5",
      title: b5.title,
      baseline: "raw INSERT statements on the connection as the store holds it (same driver, same pragmas, no store logic), one by one",
      figures,
      ratios,
      notes
    }
  }
}
