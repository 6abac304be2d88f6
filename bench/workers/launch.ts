/**
 * B1's measuring process, run once on Bun and once on Node (through vite-node, which only
 * transforms the TypeScript at load: the measured loop runs on plain Node). It measures, in
 * alternating rounds so load changes hit both alike:
 *
 * - baseline: the sandbox the local provider starts, started by hand (hand-started.ts): spawn
 *   to the first byte on a pipe. No SDK, no store, no agent.
 * - sdk: `launch({ command: "echo hi" })` to the first chunk of `run.output` reaching the
 *   caller's code, then the run's result and the closing of its scope (instance terminated and confirmed gone).
 *   After its first launches the local provider forks these from its fork server.
 * - exec: the same through a second engine whose local provider never forks
 *   (`SKYREPL_FORK_SERVER=never`): every sandbox exec'd, as a process's first launch is.
 *
 * Parameters come in the environment (BENCH_HOME, BENCH_ROUNDS, BENCH_WARMUP); the samples
 * go to stdout as one JSON line.
 */
import { launch } from "@skyrepl/core"
import { Effect, Stream } from "effect"
import { interleave, now } from "../harness.ts"
import { benchHome, startedRuntime } from "./engine.ts"
import { handStarter } from "./hand-started.ts"

const home = benchHome()
const rounds = Number(process.env["BENCH_ROUNDS"] ?? "10")
const warmup = Number(process.env["BENCH_WARMUP"] ?? "2")

const floor = await handStarter(home)
const baselineOnce = async (i: number): Promise<number> => (await floor.start(i)).first

const runtime = await startedRuntime(home)
// The provider reads SKYREPL_FORK_SERVER when its layer is built.
process.env["SKYREPL_FORK_SERVER"] = "never"
const execRuntime = await startedRuntime(home)
delete process.env["SKYREPL_FORK_SERVER"]

const sdk = { first: [] as Array<number>, result: [] as Array<number>, closed: [] as Array<number> }

/** One launch through `engine`: ms to its first byte, to its result, and to its scope closed. */
const timedLaunch = async (engine: typeof runtime) => {
  const start = now()
  const timing = await engine.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const run = yield* launch({ command: "echo hi" })
        let first: number | null = null
        yield* Stream.runHead(run.output.pipe(Stream.tap(() => Effect.sync(() => void (first ??= now() - start)))))
        if (first === null) return yield* Effect.dieMessage("the run's output ended without a byte")
        yield* run.result
        return { first: first as number, result: now() - start }
      })
    )
  )
  return { ...timing, closed: now() - start }
}

const sdkOnce = async (): Promise<number> => {
  const timing = await timedLaunch(runtime)
  sdk.first.push(timing.first)
  sdk.result.push(timing.result)
  sdk.closed.push(timing.closed)
  return timing.first
}

let i = 0
const samples = await interleave(rounds, warmup, [
  { key: "baseline", measure: () => baselineOnce(i++) },
  { key: "sdk", measure: sdkOnce },
  { key: "exec", measure: async () => (await timedLaunch(execRuntime)).first }
])
await runtime.dispose()
await execRuntime.dispose()

const keep = (xs: Array<number>) => xs.slice(warmup)
process.stdout.write(
  JSON.stringify({
    runtime: process.versions["bun"] !== undefined ? `bun ${process.versions["bun"]}` : `node ${process.versions.node}`,
    namespaces: floor.namespaces,
    python: floor.python,
    baseline: samples.get("baseline") ?? [],
    first: keep(sdk.first),
    result: keep(sdk.result),
    exec: samples.get("exec") ?? [],
    closed: keep(sdk.closed)
  }) + "\n"
)
process.exit(0)
