/**
 * `npm run bench`: runs every benchmark, prints each figure and ratio as it goes, and writes
 * bench/results.md. `--smoke` (what CI runs) does a few iterations of each at small sizes and
 * writes bench/tmp/results-smoke.md instead; `--only B1,B4` picks benchmarks (and writes
 * bench/tmp/results-partial.md, since a partial run is not the report).
 *
 * A number never fails the run: a missed target is reported, not raised. A crash does (exit 1),
 * and so does an instance left running, since that is a bug, not a measurement.
 */
import { Effect, Schema } from "effect"
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus, loadavg, release, totalmem } from "node:os"
import { join } from "node:path"
import { b1 } from "./b1-launch.ts"
import { b2 } from "./b2-cli.ts"
import { b3 } from "./b3-concurrent.ts"
import { b4 } from "./b4-attach.ts"
import { b5 } from "./b5-store.ts"
import { b6 } from "./b6-aws.ts"
import { b7 } from "./b7-orphans.ts"
import { makeClient } from "../packages/store-sqlite/src/client.ts"
import { changes } from "./changes.ts"
import {
  type Benchmark,
  benchTmp,
  capture,
  figureLine,
  fmt,
  ratioLine,
  ratioValue,
  repoRoot,
  type SectionResult,
  verdict
} from "./harness.ts"

const all: ReadonlyArray<Benchmark> = [b1, b2, b3, b4, b5, b6, b7]

const args = process.argv.slice(2)
const smoke = args.includes("--smoke")
const onlyIndex = args.indexOf("--only")
const only = onlyIndex >= 0 ? new Set((args[onlyIndex + 1] ?? "").toUpperCase().split(",")) : null
const selected = all.filter((b) => only === null || only.has(b.id))
// Only a full run of every benchmark is the committed report; anything less goes to scratch.
const outFile =
  !smoke && only === null ? join(repoRoot, "bench", "results.md") : join(benchTmp, smoke ? "results-smoke.md" : "results-partial.md")

const log = (line: string) => process.stdout.write(line + "\n")

/** The SQLite library the store runs on here (bun:sqlite's, since the runner is on Bun). */
const sqliteVersion = (): Promise<string> =>
  Effect.runPromise(
    Effect.scoped(Effect.flatMap(makeClient(":memory:"), (sql) => sql.unsafe("SELECT sqlite_version() AS v"))).pipe(
      Effect.flatMap(Schema.decodeUnknown(Schema.Tuple(Schema.Struct({ v: Schema.String })))),
      Effect.map(([row]) => row.v),
      Effect.orElseSucceed(() => "unknown")
    )
  )

const machine = async () => {
  const cpu = cpus()
  return {
    cpu: `${cpu[0]?.model ?? "unknown"} × ${cpu.length}`,
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: `Linux ${release()}`,
    bun: process.versions["bun"] ?? "not running on Bun",
    node: (await capture("node", ["--version"])) ?? "unavailable",
    python: (await capture("/usr/bin/python3", ["--version"])) ?? (await capture("python3", ["--version"])) ?? "unavailable",
    sqlite: await sqliteVersion(),
    commit: (await capture("git", ["rev-parse", "--short", "HEAD"], { cwd: repoRoot })) ?? "unknown",
    dirty: ((await capture("git", ["status", "--porcelain"], { cwd: repoRoot })) ?? "") !== ""
  }
}

const load = () => loadavg().map((l) => l.toFixed(2)).join(", ")

const section = (r: SectionResult, seconds: number, loadAtStart: string): string => {
  const lines = [`## ${r.id}: ${r.title}`, "", `Baseline: ${r.baseline}.`, "", `Load average when it started: ${loadAtStart}.`, "", "| figure | median | p99 | n |", "| --- | ---: | ---: | ---: |"]
  for (const f of r.figures) {
    if (f.stats !== undefined) {
      lines.push(`| ${f.what} | ${fmt(f.stats.median)} ${f.unit} | ${fmt(f.stats.p99)} ${f.unit} | ${f.stats.n} |`)
    } else {
      lines.push(`| ${f.what} | ${fmt(f.value ?? Number.NaN)} ${f.unit} | | |`)
    }
  }
  lines.push("", "| ratio / check | value | target | verdict |", "| --- | ---: | --- | --- |")
  for (const q of r.ratios) {
    lines.push(`| ${q.what}${q.detail === undefined ? "" : ` (${q.detail})`} | ${ratioValue(q)} | ${q.target} | ${verdict(q.met)} |`)
  }
  if (r.notes.length > 0) lines.push("", ...r.notes.map((n) => `- ${n}`))
  lines.push("", `(${seconds.toFixed(0)} s)`, "")
  return lines.join("\n")
}

const main = async (): Promise<number> => {
  const started = new Date()
  const info = await machine()
  const loadBefore = load()
  log(`SkyREPL benchmarks (${smoke ? "smoke" : "full"}): ${selected.map((b) => b.id).join(", ")}; load average ${loadBefore}`)
  const sections: Array<string> = []
  const summary: Array<string> = []
  let crashed = 0
  for (const bench of selected) {
    const loadAtStart = load()
    log(`\n== ${bench.id}: ${bench.title} (load ${loadAtStart})`)
    const t0 = Date.now()
    try {
      const result = await bench.run({ smoke, log: (line) => log(`${bench.id} ${line}`) })
      for (const f of result.figures) log(figureLine(bench.id, f))
      for (const r of result.ratios) {
        log(ratioLine(bench.id, r))
        summary.push(`| ${bench.id} | ${r.what} | ${ratioValue(r)} | ${r.target} | ${verdict(r.met)} |`)
      }
      for (const n of result.notes) log(`${bench.id} note: ${n}`)
      sections.push(section(result, (Date.now() - t0) / 1000, loadAtStart))
    } catch (error) {
      crashed++
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error)
      log(`${bench.id} CRASHED: ${message}`)
      sections.push(`## ${bench.id}: ${bench.title}\n\nCRASHED: ${message.split("\n")[0]}\n`)
      summary.push(`| ${bench.id} | crashed | | | |`)
    }
  }
  const finished = new Date()
  const doc = [
    `# SkyREPL benchmarks${smoke ? " (smoke pass: tiny sizes, numbers mean nothing)" : ""}`,
    "",
    `Written by \`npm run bench${smoke ? " -- --smoke" : ""}\` (bench/run.ts). Each figure is compared with a baseline measured in the same run; the numbers never fail CI.`,
    "",
    "| | |",
    "| --- | --- |",
    `| date | ${started.toISOString()} → ${finished.toISOString()} |`,
    `| machine | ${info.cpu}, ${info.memory}, ${info.kernel} |`,
    `| load average (1, 5, 15 min) | before ${loadBefore}; after ${load()} |`,
    `| runtimes | Bun ${info.bun}, Node ${info.node}, ${info.python}, SQLite ${info.sqlite} (bun:sqlite) |`,
    `| code | ${info.commit}${info.dirty ? " plus uncommitted changes" : ""} |`,
    "",
    "The machine has 2 cores and was shared with other engineers' test suites while this ran; the load average above says how busy it was. Medians are robust to that; p99s are not.",
    "",
    "## Summary",
    "",
    "| # | ratio / check | value | target | verdict |",
    "| --- | --- | ---: | --- | --- |",
    ...summary,
    "",
    ...sections,
    changes,
    ""
  ].join("\n")
  mkdirSync(benchTmp, { recursive: true })
  writeFileSync(outFile, doc)
  log(`\nwrote ${outFile}`)
  return crashed === 0 ? 0 : 1
}

process.exit(await main())
