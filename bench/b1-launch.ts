/**
 * B1: local launch → first output byte of `echo hi`, through the SDK, on Bun and on Node.
 * Baseline (same process, alternating rounds): the same sandbox started by hand with the
 * agent's interpreter running `echo` — no SDK, no store, no agent. See workers/launch.ts.
 */
import { Schema } from "effect"
import { join } from "node:path"
import {
  type BenchContext,
  type Benchmark,
  bunBin,
  type Figure,
  finishHome,
  lastJsonLine,
  type Ratio,
  repoRoot,
  scratchHome,
  stats,
  timeOk,
  viteNodeBin
} from "./harness.ts"

const Samples = Schema.Array(Schema.Number)
const WorkerOutput = Schema.Struct({
  runtime: Schema.String,
  namespaces: Schema.Boolean,
  python: Schema.String,
  baseline: Samples,
  first: Samples,
  result: Samples,
  exec: Samples,
  closed: Samples
})

const worker = join(repoRoot, "bench", "workers", "launch.ts")

const measure = async (ctx: BenchContext, runtime: "bun" | "node") => {
  const home = scratchHome(`b1-${runtime}`)
  try {
    const env = {
      ...process.env,
      BENCH_HOME: home,
      BENCH_ROUNDS: String(ctx.smoke ? 2 : 40),
      BENCH_WARMUP: String(ctx.smoke ? 1 : 5)
    }
    const [file, args] = runtime === "bun" ? [bunBin, [worker]] : [viteNodeBin, [worker]]
    const out = await timeOk(file, args, { env, cwd: repoRoot })
    return Schema.decodeUnknownSync(WorkerOutput)(lastJsonLine(out.stdout))
  } finally {
    finishHome(home)
  }
}

export const b1: Benchmark = {
  id: "B1",
  title: "Local launch → first output byte (`echo hi`)",
  run: async (ctx) => {
    const figures: Array<Figure> = []
    const ratios: Array<Ratio> = []
    const notes: Array<string> = []
    for (const runtime of ["bun", "node"] as const) {
      const r = await measure(ctx, runtime)
      const base = stats(r.baseline)
      const first = stats(r.first)
      figures.push(
        { what: `${r.runtime}: baseline (sandbox + ${r.python} -S running echo, by hand)`, unit: "ms", stats: base },
        { what: `${r.runtime}: SDK launch → first output byte`, unit: "ms", stats: first },
        { what: `${r.runtime}: SDK launch → run result`, unit: "ms", stats: stats(r.result) },
        { what: `${r.runtime}: SDK launch → scope closed (instance terminated, confirmed gone)`, unit: "ms", stats: stats(r.closed) },
        { what: `${r.runtime}: SDK launch → first output byte, every sandbox exec'd (fork server off)`, unit: "ms", stats: stats(r.exec) }
      )
      ratios.push(
        {
          what: `${r.runtime}: SDK first byte / baseline (medians)`,
          value: first.median / base.median,
          target: "≤ 1.5×",
          met: first.median / base.median <= 1.5
        },
        {
          what: `${r.runtime}: exec'd first byte / baseline (medians; a process's first launch, and the provider with \`forkServer: "never"\`)`,
          value: stats(r.exec).median / base.median,
          target: "(reported)",
          met: null
        },
        {
          what: `${r.runtime}: SDK first byte median, absolute`,
          value: first.median,
          target: "< 100 ms",
          unit: "ms",
          met: first.median < 100
        }
      )
      if (!r.namespaces) notes.push(`${r.runtime}: namespaces unavailable, both sides ran as plain process groups.`)
    }
    notes.push(
      "Node runs the same worker through vite-node, which transforms the TypeScript when modules load; the timed loop runs on plain Node after a warm-up.",
      "Baseline and SDK alternate round by round in the same process, so load changes on this shared machine hit both alike.",
      "The SDK's launches are forked from the local provider's fork server, which its second launch starts (the warm-up covers the first ones); the exec'd figure is the same launch through an engine whose provider never forks."
    )
    return {
      id: "B1",
      title: b1.title,
      baseline: "the local provider's sandbox (same unshare flags, hostname step, interpreter and -S) started by hand, the interpreter running `echo hi` with os.system; spawn → first byte on a pipe",
      figures,
      ratios,
      notes
    }
  }
}
