/**
 * B3: 200 local launches of `echo` at once from one engine, against launches one at a time.
 * Every launch must succeed, p99 latency (launch → result) should stay under 1 s, and no
 * instance may be left: /proc is checked for the home's sandboxes afterwards.
 */
import { Schema } from "effect"
import { cpus } from "node:os"
import { join } from "node:path"
import { type Benchmark, bunBin, finishHome, lastJsonLine, leftovers as leftoverNames, repoRoot, scratchHome, stats, timeOk } from "./harness.ts"

const WorkerOutput = Schema.Struct({
  sequential: Schema.Array(Schema.Number),
  sequentialTotal: Schema.Number,
  seqFailures: Schema.Number,
  concurrent: Schema.Array(Schema.Number),
  again: Schema.Array(Schema.Number),
  closed: Schema.Array(Schema.Number),
  launched: Schema.Array(Schema.Number),
  concurrentTotal: Schema.Number,
  errors: Schema.Array(Schema.String),
  handFirst: Schema.Array(Schema.Number),
  handExited: Schema.Array(Schema.Number),
  handTotal: Schema.Number,
  ownCpu: Schema.Number,
  threadCpu: Schema.NullOr(Schema.Number),
  machineCpu: Schema.Number
})

export const b3: Benchmark = {
  id: "B3",
  title: "Concurrent local launches of `echo`",
  run: async (ctx) => {
    const concurrent = ctx.smoke ? 6 : 200
    const sequential = ctx.smoke ? 2 : 20
    const home = scratchHome("b3")
    let leftovers: ReadonlyArray<string> = []
    try {
      const out = await timeOk(bunBin, [join(repoRoot, "bench", "workers", "concurrent.ts")], {
        env: { ...process.env, BENCH_HOME: home, BENCH_SEQUENTIAL: String(sequential), BENCH_CONCURRENT: String(concurrent) },
        cwd: repoRoot
      })
      const r = Schema.decodeUnknownSync(WorkerOutput)(lastJsonLine(out.stdout))
      leftovers = leftoverNames(home)
      const seq = stats(r.sequential)
      const con = stats(r.concurrent)
      const seqRate = (r.sequential.length / r.sequentialTotal) * 1000
      const conRate = (concurrent / r.concurrentTotal) * 1000
      const cores = cpus().length
      // Launches at once cannot finish sooner than the CPU they need allows: the sequential
      // per-launch time spread over every core is the floor for the last one to finish.
      const floor = (seq.median * concurrent) / cores
      const hand = stats(r.handFirst)
      // What the burst cost outside the controller's process: on a quiet machine, the sandboxes'
      // side of every launch. Spread over every core, it is about how soon the last result could
      // come with a controller that cost nothing (a little sooner: their ends are counted too).
      const sandboxCpu = Math.max(0, r.machineCpu - r.ownCpu)
      return {
        id: "B3",
        title: b3.title,
        baseline: `${sequential} launches one after another from the same engine; and ${concurrent} of B1's hand-started sandboxes (no SDK, no store, no agent) at once, after the SDK's burst`,
        figures: [
          { what: "sequential: launch → result", unit: "ms", stats: seq },
          { what: `${concurrent} at once: launch → result`, unit: "ms", stats: con },
          { what: `${concurrent} at once: launch → launch returned (run started)`, unit: "ms", stats: stats(r.launched) },
          { what: `${concurrent} at once: launch → scope closed (terminated)`, unit: "ms", stats: stats(r.closed) },
          { what: `${concurrent} at once again, same engine (its JIT warmed by the first burst): launch → result`, unit: "ms", stats: stats(r.again) },
          { what: "sequential throughput", unit: "launches/s", value: seqRate },
          { what: `${concurrent} at once: throughput (all done)`, unit: "launches/s", value: conRate },
          { what: `${concurrent} at once: wall time until all ended`, unit: "ms", value: r.concurrentTotal },
          { what: `${concurrent} at once: this process's CPU per launch (the controller, with its JIT and GC threads)`, unit: "ms", value: r.ownCpu / concurrent },
          ...(r.threadCpu === null
            ? []
            : [{ what: `${concurrent} at once: the controller's JavaScript thread's CPU per launch (its schedstat)`, unit: "ms", value: r.threadCpu / concurrent }]),
          { what: `${concurrent} at once: the machine's CPU per launch (every process, from /proc/stat; includes anything else running)`, unit: "ms", value: r.machineCpu / concurrent },
          { what: `${concurrent} at once: the sandboxes' CPU per launch (the machine's less the controller's: fork server, sandboxes, agents, their commands, the kernel's work for them; and anything else running)`, unit: "ms", value: sandboxCpu / concurrent },
          { what: `${concurrent} hand-started sandboxes at once (no SDK): spawn → first byte`, unit: "ms", stats: hand },
          { what: `${concurrent} hand-started sandboxes at once (no SDK): spawn → exited`, unit: "ms", stats: stats(r.handExited) },
          { what: `${concurrent} hand-started sandboxes at once (no SDK): wall time until all ended`, unit: "ms", value: r.handTotal }
        ],
        ratios: [
          { what: "concurrent throughput / sequential throughput", value: conRate / seqRate, target: "(reported)", met: null },
          {
            what: `launches that failed (of ${concurrent} + ${sequential}, and the second burst's ${concurrent})`,
            value: r.errors.length + r.seqFailures,
            target: "0",
            unit: "",
            met: r.errors.length + r.seqFailures === 0
          },
          { what: "p99 launch latency at once (launch → result)", value: con.p99, unit: "ms", target: "≤ 1000 ms", met: con.p99 <= 1000 },
          {
            what: "p99 at once again from the same engine, launch → result (its JIT warmed by the first burst)",
            value: stats(r.again).p99,
            unit: "ms",
            target: "(reported: how much of the verdict's figure is a fresh process's JIT)",
            met: null
          },
          {
            what: "p99 at once, launch → launch returned (the call's own latency)",
            value: stats(r.launched).p99,
            unit: "ms",
            target: "(reported: the verdict above is on the stricter figure)",
            met: null
          },
          {
            what: "p99 at once / CPU floor (sequential median × launches ÷ cores)",
            value: con.p99 / floor,
            target: "(reported)",
            met: null,
            detail: `floor ${floor.toFixed(0)} ms on ${cores} cores`
          },
          {
            what: "p99 at once / the CPU the whole burst took (launches to scopes closed), spread over every core",
            value: con.p99 / (r.machineCpu / cores),
            target: "(reported: the results' share of a burst bound by CPU; its teardown comes after them)",
            met: null,
            detail: `${(r.machineCpu / cores).toFixed(0)} ms on ${cores} cores`
          },
          {
            what: "p99 at once / the sandboxes' CPU over the whole burst (their ends included), spread over every core",
            value: con.p99 / (sandboxCpu / cores),
            target: "(reported: its detail is about the soonest the last result could come with a controller that cost nothing; a p99 target below that is out of reach on this machine)",
            met: null,
            detail: `${(sandboxCpu / cores).toFixed(0)} ms on ${cores} cores`
          },
          ...(r.threadCpu === null
            ? []
            : [
                {
                  what: "p99 at once / the CPU of the controller's JavaScript thread over the whole burst",
                  value: con.p99 / r.threadCpu,
                  target: "(reported: that one thread does every launch's controller work, its teardown included, one piece at a time)",
                  met: null,
                  detail: `${r.threadCpu.toFixed(0)} ms`
                }
              ]),
          {
            what: `p99 at once / p99 of ${concurrent} hand-started sandboxes at once (launch → result against spawn → first byte)`,
            value: con.p99 / hand.p99,
            target: "(reported: below 1, the SDK's launches finished sooner than the same number of bare sandboxes)",
            met: null,
            detail: `hand-started p99 ${hand.p99.toFixed(0)} ms`
          },
          { what: "instances left running afterwards (/proc)", value: leftovers.length, unit: "", target: "0", met: leftovers.length === 0 }
        ],
        notes: [
          ...r.errors.slice(0, 5).map((e) => `failure: ${e}`),
          ...(leftovers.length > 0 ? [`left running (killed by the benchmark): ${leftovers.join(", ")}`] : [])
        ]
      }
    } finally {
      finishHome(home)
    }
  }
}
