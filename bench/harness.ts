/**
 * Shared pieces of the benchmarks: timing, statistics, ratio lines, child-process measurement,
 * scratch state homes, the left-over check, and the types the runner writes results.md from.
 *
 * Runs on Bun (the runner) and on Node (the B1 worker under vite-node), so it uses only
 * `node:` modules.
 */
import { LocalApi } from "@skyrepl/provider-local"
import { Effect } from "effect"
import { spawn, type SpawnOptions } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { join } from "node:path"
import { performance } from "node:perf_hooks"

export const repoRoot = join(import.meta.dirname, "..")
export const benchTmp = join(repoRoot, "bench", "tmp")
export const bunBin = join(repoRoot, "node_modules", ".bin", "bun")
export const viteNodeBin = join(repoRoot, "node_modules", ".bin", "vite-node")
export const replBin = join(repoRoot, "packages", "cli", "bin", "repl")

export const now = (): number => performance.now()

// ---------------------------------------------------------------------------------------------
// Statistics

export interface Stats {
  readonly n: number
  readonly min: number
  readonly median: number
  readonly p99: number
  readonly max: number
  readonly mean: number
}

/** Nearest-rank percentile: with few samples p99 is the maximum, which is the honest reading. */
const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN

export const stats = (samples: ReadonlyArray<number>): Stats => {
  const sorted = [...samples].sort((a, b) => a - b)
  const n = sorted.length
  return {
    n,
    min: sorted[0] ?? Number.NaN,
    median: n === 0 ? Number.NaN : n % 2 === 1 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2,
    p99: percentile(sorted, 99),
    max: sorted[n - 1] ?? Number.NaN,
    mean: n === 0 ? Number.NaN : sorted.reduce((a, b) => a + b, 0) / n
  }
}

export const fmt = (value: number, digits = 1): string =>
  Number.isFinite(value) ? value.toFixed(Math.abs(value) >= 100 ? 0 : digits) : "n/a"

// ---------------------------------------------------------------------------------------------
// Results

/** One measured quantity: a distribution (median, p99) or a single value. */
export interface Figure {
  readonly what: string
  readonly unit: string
  readonly stats?: Stats
  readonly value?: number
}

/** A figure compared with the baseline of the same run, and with the issue's target. */
export interface Ratio {
  readonly what: string
  /** null when the baseline could not be measured here. */
  readonly value: number | null
  readonly target: string
  /** null: no verdict possible (baseline unavailable). */
  readonly met: boolean | null
  readonly detail?: string
  /** For an absolute figure: its unit. A ratio has none ("×" is implied). */
  readonly unit?: string
}

export interface SectionResult {
  readonly id: string
  readonly title: string
  readonly baseline: string
  readonly figures: ReadonlyArray<Figure>
  readonly ratios: ReadonlyArray<Ratio>
  readonly notes: ReadonlyArray<string>
}

export interface BenchContext {
  readonly smoke: boolean
  readonly log: (line: string) => void
}

export interface Benchmark {
  readonly id: string
  readonly title: string
  readonly run: (ctx: BenchContext) => Promise<SectionResult>
}

export const verdict = (met: boolean | null): string => (met === null ? "no verdict" : met ? "met" : "MISSED")

/** A ratio's or check's value as printed: "baseline unavailable", "3.84×", "55.3 ms" or a count. */
export const ratioValue = (r: Ratio): string =>
  r.value === null
    ? "baseline unavailable"
    : r.unit === undefined
      ? `${fmt(r.value, 2)}×`
      : r.unit === "" || r.unit === "calls"
        ? `${Number.isInteger(r.value) ? r.value : fmt(r.value)} ${r.unit}`.trim()
        : `${fmt(r.value)} ${r.unit}`

export const ratioLine = (id: string, r: Ratio): string =>
  `${id} ratio  ${r.what}: ${ratioValue(r)}  (target ${r.target}: ${verdict(r.met)})${r.detail === undefined ? "" : `  ${r.detail}`}`

export const figureLine = (id: string, f: Figure): string =>
  f.stats !== undefined
    ? `${id} ${f.what}: median ${fmt(f.stats.median)} ${f.unit}, p99 ${fmt(f.stats.p99)} ${f.unit} (n=${f.stats.n}, min ${fmt(f.stats.min)})`
    : `${id} ${f.what}: ${fmt(f.value ?? Number.NaN)} ${f.unit}`

// ---------------------------------------------------------------------------------------------
// Child processes

export interface ProcessTiming {
  /** Spawn to exit, ms. */
  readonly ms: number
  /** Spawn to the first byte on stdout, ms (null when nothing was written). */
  readonly firstByteMs: number | null
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs a program to its end, timing it from just before `spawn` to its exit (pipes closed). */
export const timeProcess = (file: string, args: ReadonlyArray<string>, options: SpawnOptions = {}): Promise<ProcessTiming> =>
  new Promise((resolve, reject) => {
    const out: Array<Buffer> = []
    const err: Array<Buffer> = []
    let firstByteMs: number | null = null
    const start = now()
    const child = spawn(file, [...args], { ...options, stdio: ["ignore", "pipe", "pipe"] })
    child.stdout?.on("data", (d: Buffer) => {
      if (firstByteMs === null) firstByteMs = now() - start
      out.push(d)
    })
    child.stderr?.on("data", (d: Buffer) => err.push(d))
    child.on("error", reject)
    child.on("close", (code) =>
      resolve({
        ms: now() - start,
        firstByteMs,
        code,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8")
      })
    )
  })

/** Like `timeProcess`, but a non-zero exit is a crash of the benchmark. */
export const timeOk = async (file: string, args: ReadonlyArray<string>, options: SpawnOptions = {}): Promise<ProcessTiming> => {
  const t = await timeProcess(file, args, options)
  if (t.code !== 0) throw new Error(`${file} ${args.join(" ")} exited ${t.code}: ${t.stderr.trim().slice(0, 500)}`)
  return t
}

/**
 * Measures several commands in rounds, one of each per round, so that a change in the
 * machine's load (other test suites here) lands on all of them alike rather than on whichever
 * happened to run during it.
 */
export const interleave = async (
  rounds: number,
  warmup: number,
  cases: ReadonlyArray<{ readonly key: string; readonly measure: () => Promise<number> }>
): Promise<ReadonlyMap<string, Array<number>>> => {
  const samples = new Map(cases.map((c) => [c.key, [] as Array<number>] as const))
  for (let i = 0; i < warmup + rounds; i++) {
    for (const c of cases) {
      const ms = await c.measure()
      if (i >= warmup) samples.get(c.key)!.push(ms)
    }
  }
  return samples
}

// ---------------------------------------------------------------------------------------------
// Scratch homes and left-overs

/** A fresh state home under bench/tmp (gitignored). */
export const scratchHome = (label: string): string => {
  mkdirSync(benchTmp, { recursive: true })
  return mkdtempSync(join(benchTmp, `${label}-`))
}

export const removeHome = (home: string): void => rmSync(home, { recursive: true, force: true })

/** The control id of a state home, from the copy the store keeps beside the database. */
export const controlIdOf = (home: string): string | null => {
  const file = join(home, "control-id")
  return existsSync(file) ? readFileSync(file, "utf8").trim() : null
}

/** Names of live sandboxes of `home`'s control plane, read from /proc. */
export const leftovers = (home: string): ReadonlyArray<string> => {
  const controlId = controlIdOf(home)
  if (controlId === null) return []
  const sandboxes = LocalApi.findSandboxes(Effect.runSync(LocalApi.scanProcesses), "local")
  return [...sandboxes.keys()].filter((name) => name.startsWith(`repl-${controlId}-`))
}

/**
 * Kills whatever of `home`'s sandboxes is still running (a benchmark must not leave an
 * instance behind even when it fails) and returns their names, so the caller reports the leak.
 */
export const reapLeftovers = (home: string): ReadonlyArray<string> => {
  const names = new Set(leftovers(home))
  if (names.size === 0) return []
  const processes = Effect.runSync(LocalApi.scanProcesses)
  for (const sandbox of LocalApi.findSandboxes(processes, "local").values()) {
    if (names.has(sandbox.name)) LocalApi.killSandbox(sandbox, processes)
  }
  return [...names]
}

/** Ends the benchmark's home: a leftover instance is a bug, so it fails the run (after killing it). */
export const finishHome = (home: string): void => {
  const left = reapLeftovers(home)
  removeHome(home)
  if (left.length > 0) throw new Error(`instances left running (now killed): ${left.join(", ")}`)
}

// ---------------------------------------------------------------------------------------------
// Tools of the machine

/** Absolute path of `program` on PATH, or null. */
export const which = (program: string): string | null => {
  for (const dir of (process.env["PATH"] ?? "").split(":")) {
    if (dir === "") continue
    const candidate = join(dir, program)
    if (existsSync(candidate)) return candidate
  }
  return null
}

/** The output of a short command, trimmed; null when it cannot run. */
export const capture = async (file: string, args: ReadonlyArray<string>, options: SpawnOptions = {}): Promise<string | null> => {
  try {
    const t = await timeProcess(file, args, options)
    return t.code === 0 ? (t.stdout + t.stderr).trim() : null
  } catch {
    return null
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Reads a JSON document a worker printed as its last stdout line. */
export const lastJsonLine = (stdout: string): unknown => {
  const lines = stdout.trim().split("\n")
  const last = lines[lines.length - 1]
  if (last === undefined) throw new Error("worker printed nothing")
  return JSON.parse(last)
}
