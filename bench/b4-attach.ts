/**
 * B4: attach throughput (512 MiB of output through agent → hub → store → attach reader) against
 * a raw pipe of the same bytes, and latency from the run's write to the attach reader.
 */
import { Schema } from "effect"
import { join } from "node:path"
import { type Benchmark, bunBin, finishHome, lastJsonLine, repoRoot, scratchHome, stats, timeOk } from "./harness.ts"

const Transfer = Schema.Struct({ firstToLastMs: Schema.Number, totalMs: Schema.Number })
const WorkerOutput = Schema.Struct({
  bytes: Schema.Number,
  pipe: Schema.Array(Transfer),
  sdk: Schema.Array(Transfer),
  storeOnly: Schema.Struct({ appendMs: Schema.Number, readMs: Schema.Number }),
  diskMs: Schema.Number,
  local: Schema.Array(Schema.Number),
  remote: Schema.Array(Schema.Number)
})

const mib = 2 ** 20

export const b4: Benchmark = {
  id: "B4",
  title: "Attach throughput and latency",
  run: async (ctx) => {
    const bytes = ctx.smoke ? 4 * mib : 512 * mib
    const home = scratchHome("b4")
    try {
      const out = await timeOk(bunBin, [join(repoRoot, "bench", "workers", "attach.ts")], {
        env: {
          ...process.env,
          BENCH_HOME: home,
          BENCH_BYTES: String(bytes),
          BENCH_ROUNDS: ctx.smoke ? "1" : "3",
          BENCH_TICKS: ctx.smoke ? "10" : "100"
        },
        cwd: repoRoot
      })
      const r = Schema.decodeUnknownSync(WorkerOutput)(lastJsonLine(out.stdout))
      const rate = (t: { readonly firstToLastMs: number }) => bytes / mib / (t.firstToLastMs / 1000)
      const pipeRate = stats(r.pipe.map(rate))
      const sdkRate = stats(r.sdk.map(rate))
      const local = stats(r.local)
      const remote = stats(r.remote)
      return {
        id: "B4",
        title: b4.title,
        baseline: `\`head -c ${bytes / mib}M /dev/zero\` read by the benchmark process through one pipe`,
        figures: [
          { what: `pipe throughput (${bytes / mib} MiB)`, unit: "MiB/s", stats: pipeRate },
          { what: `attach throughput (${bytes / mib} MiB, first → last byte)`, unit: "MiB/s", stats: sdkRate },
          { what: "attach: launch → last byte", unit: "ms", stats: stats(r.sdk.map((t) => t.totalMs)) },
          { what: "store alone: appendOutput in 4 MiB chunks as written, uncompressed (no agent, no HTTP)", unit: "MiB/s", value: bytes / mib / (r.storeOnly.appendMs / 1000) },
          { what: "store alone: readOutput of the same", unit: "MiB/s", value: bytes / mib / (r.storeOnly.readMs / 1000) },
          { what: "disk alone: the same bytes written to a new file in 4 MiB writes (no sync)", unit: "MiB/s", value: bytes / mib / (r.diskMs / 1000) },
          { what: "latency, write → in-process attach reader (run.output)", unit: "ms", stats: local },
          { what: "latency, write → reader through the store (another engine, as `repl run attach`)", unit: "ms", stats: remote }
        ],
        ratios: [
          { what: "attach throughput / pipe throughput (medians)", value: sdkRate.median / pipeRate.median, target: "≥ 0.5", met: sdkRate.median / pipeRate.median >= 0.5 },
          {
            what: "attach throughput / store append alone",
            value: sdkRate.median / (bytes / mib / (r.storeOnly.appendMs / 1000)),
            target: "(reported: above 1, compression did better than storing the bytes as written)",
            met: null
          },
          {
            what: "disk alone / pipe throughput (the most a store that keeps the bytes as written could reach)",
            value: bytes / mib / (r.diskMs / 1000) / pipeRate.median,
            target: "(reported: the disk floor)",
            met: null
          },
          { what: "latency p50, in-process reader", value: local.median, unit: "ms", target: "≤ 20 ms", met: local.median <= 20 },
          { what: "latency p50, reader through the store", value: remote.median, unit: "ms", target: "≤ 20 ms", met: remote.median <= 20 }
        ],
        notes: ["Throughput counts from the first byte the reader sees to the last, so launch time is not in it (it is in \"launch → last byte\")."]
      }
    } finally {
      finishHome(home)
    }
  }
}
