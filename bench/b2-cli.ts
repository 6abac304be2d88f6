/**
 * B2: CLI start-up, as a user runs it (node_modules/.bin/repl, the shell launcher, the Bun
 * bundle): `repl --version`, `repl run list` over a store holding 10,000 runs, and
 * `repl run -c 'echo hi'` end to end. Baselines in the same rounds: `bun -e 0`, and
 * `aws --version` (the AWS CLI, a tool the same users run).
 */
import { existsSync, realpathSync } from "node:fs"
import { join } from "node:path"
import {
  type Benchmark,
  bunBin,
  capture,
  type Figure,
  finishHome,
  interleave,
  type Ratio,
  repoRoot,
  scratchHome,
  stats,
  timeOk,
  which
} from "./harness.ts"
import { seedHome } from "./seed.ts"

/** What users call: npm links `repl` into node_modules/.bin. */
const repl = join(repoRoot, "node_modules", ".bin", "repl")

/**
 * The AWS CLI executable. A version manager's shim (pyenv here) adds its own start-up to every
 * call; measuring through it would flatter us, so a shim is resolved to the real program.
 */
const findAwsCli = async (): Promise<{ readonly path: string; readonly note: string } | null> => {
  const onPath = which("aws")
  if (onPath === null) return null
  if (!onPath.includes("/shims/")) return { path: onPath, note: `${onPath}` }
  const real = await capture("pyenv", ["which", "aws"])
  if (real !== null && existsSync(real)) return { path: real, note: `${real} (the pyenv shim ${onPath} resolved, so its own start-up is not counted)` }
  return { path: realpathSync(onPath), note: `${onPath} (a shim that could not be resolved: measured as is)` }
}

export const b2: Benchmark = {
  id: "B2",
  title: "CLI start-up",
  run: async (ctx) => {
    const runs = ctx.smoke ? 200 : 10_000
    const rounds = ctx.smoke ? 2 : 25
    const warmup = ctx.smoke ? 1 : 3
    const listHome = scratchHome("b2-list")
    const runHome = scratchHome("b2-run")
    try {
      const t0 = Date.now()
      await seedHome(listHome, { count: runs })
      ctx.log(`seeded ${runs} runs in ${Date.now() - t0} ms`)
      const aws = await findAwsCli()
      const awsVersion = aws === null ? null : await capture(aws.path, ["--version"])
      const env = (home: string) => ({ ...process.env, SKYREPL_HOME: home })
      const cases = [
        { key: "bun -e 0", measure: async () => (await timeOk(bunBin, ["-e", "0"])).ms },
        { key: "repl --version", measure: async () => (await timeOk(repl, ["--version"])).ms },
        { key: "repl run list", measure: async () => (await timeOk(repl, ["run", "list"], { env: env(listHome) })).ms },
        {
          key: "repl run -c 'echo hi'",
          measure: async () => {
            const t = await timeOk(repl, ["run", "-c", "echo hi"], { env: env(runHome) })
            if (t.stdout !== "hi\n") throw new Error(`repl run printed ${JSON.stringify(t.stdout)}`)
            return t.ms
          }
        },
        ...(aws === null ? [] : [{ key: "aws --version", measure: async () => (await timeOk(aws.path, ["--version"])).ms }])
      ]
      const samples = await interleave(rounds, warmup, cases)
      const s = (key: string) => stats(samples.get(key) ?? [])
      const figures: Array<Figure> = cases.map((c) => ({ what: c.key, unit: "ms", stats: s(c.key) }))
      const bun = s("bun -e 0").median
      const version = s("repl --version").median
      const list = s("repl run list").median
      const runC = s("repl run -c 'echo hi'").median
      const awsMedian = aws === null ? null : s("aws --version").median
      const vsAws = (what: string, value: number, fraction: number, label: string): Ratio =>
        awsMedian === null
          ? { what, value: null, target: `≤ ${label} of aws --version`, met: null }
          : {
              what,
              value: value / awsMedian,
              target: `≤ ${fraction} (${label}) of aws --version = ${(awsMedian * fraction).toFixed(0)} ms`,
              met: value <= awsMedian * fraction
            }
      const ratios: Array<Ratio> = [
        { what: "repl --version / bun -e 0", value: version / bun, target: "≤ 4×", met: version <= 4 * bun },
        vsAws(`repl run list (${runs} runs) / aws --version`, list, 0.25, "¼"),
        vsAws("repl run -c 'echo hi' / aws --version", runC, 0.5, "½")
      ]
      const notes = [
        `repl is ${repl} (the shell launcher npm links), running packages/cli/dist/repl.js on ${bunBin}.`,
        aws === null
          ? "The AWS CLI is not installed here: its ratios are reported as baseline unavailable (install it, e.g. `apt-get install awscli`, to compare)."
          : `AWS CLI: ${aws.note}, ${awsVersion ?? "version unknown"}.`,
        `run list reads a store seeded with ${runs} finished runs through the store's own createLaunch; run -c uses a separate, empty home.`
      ]
      return {
        id: "B2",
        title: b2.title,
        baseline: "`bun -e 0` (the runtime's own start-up) and `aws --version`, timed in the same rounds",
        figures,
        ratios,
        notes
      }
    } finally {
      finishHome(listHome)
      finishHome(runHome)
    }
  }
}
