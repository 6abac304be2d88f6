/**
 * B3's measuring process (Bun): one engine, `BENCH_SEQUENTIAL` launches of `echo hi` one after
 * another (the baseline), then `BENCH_CONCURRENT` launched at once. Each launch is timed from
 * the `launch` call to its result (the command ran and its output is in), and to `launch`
 * returning (the run started); the scope closes (instance terminated) after that. Then the
 * same number of hand-started sandboxes (B1's baseline, no SDK) at once, each timed to its
 * first byte: what the machine takes to run that many sandboxes at all. Between the two, the
 * same burst once more from the same engine, its JIT warmed by the first. Prints one JSON line.
 */
import { launch } from "@skyrepl/core"
import { Effect, Exit, Stream } from "effect"
import { readFileSync } from "node:fs"
import { now } from "../harness.ts"
import { benchHome, startedRuntime } from "./engine.ts"
import { handStarter } from "./hand-started.ts"

const home = benchHome()
const sequential = Number(process.env["BENCH_SEQUENTIAL"] ?? "5")
const concurrent = Number(process.env["BENCH_CONCURRENT"] ?? "10")

const runtime = await startedRuntime(home)

/** One launch: ms to its result, and whether it printed what it should. */
const once = Effect.gen(function* () {
  const start = now()
  const outcome = yield* Effect.scoped(
    Effect.gen(function* () {
      const run = yield* launch({ command: "echo hi" })
      const launchedMs = now() - start
      const chunks = yield* Stream.runCollect(run.output)
      const result = yield* run.result
      const text = [...chunks].map((c) => Buffer.from(c.data).toString("utf8")).join("")
      return { ms: now() - start, launchedMs, ok: result.state === "succeeded" && text === "hi\n" }
    })
  )
  return { ...outcome, closedMs: now() - start }
})

/**
 * CPU time every core has spent busy since boot, in ms: /proc/stat's first line, all but idle
 * and iowait, counted in USER_HZ (100 a second on Linux). On a shared machine it includes
 * whatever else ran.
 */
const machineBusyMs = (): number => {
  const fields = readFileSync("/proc/stat", "latin1").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number)
  const ticks = fields.reduce((sum, v, i) => (i === 3 || i === 4 ? sum : sum + v), 0)
  return (ticks * 1000) / 100
}

/**
 * CPU time this process's main thread (the controller's one JavaScript thread) has run, in ms,
 * from its schedstat (nanoseconds on a CPU); null where there is none (not Linux).
 */
const mainThreadMs = (): number | null => {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, "latin1").split(" ")[0]) / 1e6
  } catch {
    return null
  }
}

const seq: Array<number> = []
let seqFailures = 0
// One unmeasured launch first: the first one pays for loading the modules on that path.
await runtime.runPromise(once)
const seqStart = now()
for (let i = 0; i < sequential; i++) {
  const r = await runtime.runPromise(once)
  seq.push(r.ms)
  if (!r.ok) seqFailures++
}
const seqTotal = now() - seqStart

const conStart = now()
const machineBefore = machineBusyMs()
const ownBefore = process.cpuUsage()
const threadBefore = mainThreadMs()
const exits = await runtime.runPromise(Effect.forEach(Array.from({ length: concurrent }), () => Effect.exit(once), { concurrency: "unbounded" }))
const conTotal = now() - conStart
const own = process.cpuUsage(ownBefore)
const threadAfter = mainThreadMs()
const threadCpu = threadBefore === null || threadAfter === null ? null : threadAfter - threadBefore
const ownCpu = (own.user + own.system) / 1000
const machineCpu = machineBusyMs() - machineBefore
const con: Array<number> = []
const closed: Array<number> = []
const launched: Array<number> = []
const errors: Array<string> = []
for (const exit of exits) {
  if (Exit.isSuccess(exit)) {
    con.push(exit.value.ms)
    closed.push(exit.value.closedMs)
    launched.push(exit.value.launchedMs)
    if (!exit.value.ok) errors.push("wrong output or state")
  } else {
    errors.push(String(exit.cause).slice(0, 300))
  }
}
// The same burst again from the same engine: its JIT has compiled what the first burst ran
// (about a third of the controller's CPU in the first is its JIT thread's), so this one says how
// much of the first burst's latency is a fresh process's.
const againExits = await runtime.runPromise(Effect.forEach(Array.from({ length: concurrent }), () => Effect.exit(once), { concurrency: "unbounded" }))
const again: Array<number> = []
for (const exit of againExits) {
  if (Exit.isSuccess(exit) && exit.value.ok) again.push(exit.value.ms)
  else errors.push(Exit.isSuccess(exit) ? "second burst: wrong output or state" : `second burst: ${String(exit.cause).slice(0, 280)}`)
}
await runtime.dispose()

// After the SDK's burst, so that figure is taken as before; one unmeasured start first, as above.
const floor = await handStarter(home)
await floor.start(0)
const handStart = now()
const hand = await Promise.all(Array.from({ length: concurrent }, (_, i) => floor.start(i + 1)))
const handTotal = now() - handStart
process.stdout.write(
  JSON.stringify({
    sequential: seq,
    sequentialTotal: seqTotal,
    seqFailures,
    concurrent: con,
    again,
    closed,
    launched,
    concurrentTotal: conTotal,
    errors,
    handFirst: hand.map((h) => h.first),
    handExited: hand.map((h) => h.exited),
    handTotal,
    ownCpu,
    threadCpu,
    machineCpu
  }) + "\n"
)
process.exit(0)
