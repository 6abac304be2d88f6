/**
 * B1's measuring process, run once on Bun and once on Node (through vite-node, which only
 * transforms the TypeScript at load: the measured loop runs on plain Node). It measures, in
 * alternating rounds so load changes hit both alike:
 *
 * - baseline: the sandbox the local provider starts (same unshare flags, same hostname step,
 *   same interpreter with the same flags), started by hand, its interpreter running `echo hi`
 *   with os.system: spawn to the first byte on a pipe. No SDK, no store, no agent.
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
import { LocalApi } from "@skyrepl/provider-local"
import { Effect, Stream } from "effect"
import { spawn } from "node:child_process"
import { existsSync, mkdirSync } from "node:fs"
import { join } from "node:path"
import { interleave, now, which } from "../harness.ts"
import { benchHome, startedRuntime } from "./engine.ts"

const home = benchHome()
const rounds = Number(process.env["BENCH_ROUNDS"] ?? "10")
const warmup = Number(process.env["BENCH_WARMUP"] ?? "2")

/** The interpreter the local provider picks (see provider-local options.ts). */
const python = process.env["SKYREPL_PYTHON"] ?? (existsSync("/usr/bin/python3") ? "/usr/bin/python3" : which("python3"))
if (python === null) throw new Error("no python3")
const namespaces = await Effect.runPromise(LocalApi.probeNamespaces(which("unshare")))
const workdir = join(home, "baseline")
mkdirSync(workdir, { recursive: true })

const baselineOnce = (i: number): Promise<number> =>
  new Promise((resolve, reject) => {
    const name = `bench-baseline-${i}`
    const interpreter = [python, "-S", "-c", "import os; os.system('echo hi')"]
    const [file, args] =
      namespaces === null
        ? [interpreter[0]!, interpreter.slice(1)]
        : [
            namespaces.unshare,
            [...namespaces.flags, "--", "/bin/sh", "-c", '{ printf %s "$0" > /proc/sys/kernel/hostname; } 2>/dev/null || hostname "$0" && exec "$@"', name, ...interpreter]
          ]
    let first: number | null = null
    const start = now()
    const child = spawn(file, args, {
      cwd: workdir,
      env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin" },
      detached: true,
      stdio: ["ignore", "pipe", "ignore"]
    })
    child.stdout.once("data", () => {
      first = now() - start
    })
    child.on("error", reject)
    child.on("close", (code) => (code === 0 && first !== null ? resolve(first) : reject(new Error(`baseline exited ${code}`))))
  })

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
    namespaces: namespaces !== null,
    python,
    baseline: samples.get("baseline") ?? [],
    first: keep(sdk.first),
    result: keep(sdk.result),
    exec: samples.get("exec") ?? [],
    closed: keep(sdk.closed)
  }) + "\n"
)
process.exit(0)
