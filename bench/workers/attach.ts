/**
 * B4's measuring process (Bun). Throughput: a run writes BENCH_BYTES bytes to stdout and an
 * in-process attach reader (`run.output`) counts them; the baseline is the same command on a
 * plain pipe read by this process. Latency: a run writes a wall-clock timestamp every 20 ms;
 * the in-process reader, and a reader in a second engine on the same store (as `repl run
 * attach` from another process sees it: through the store), compare it with their own clock.
 */
import { attach, launch } from "@skyrepl/core"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { Effect, Fiber, ManagedRuntime, Stream } from "effect"
import { spawn } from "node:child_process"
import { closeSync, openSync, rmSync, writeSync } from "node:fs"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { now } from "../harness.ts"
import { benchHome, localEngine } from "./engine.ts"
import { seedLaunches } from "../seed.ts"

const home = benchHome()
const bytes = Number(process.env["BENCH_BYTES"] ?? String(8 * 2 ** 20))
const ticks = Number(process.env["BENCH_TICKS"] ?? "20")
const python = process.env["SKYREPL_PYTHON"] ?? "/usr/bin/python3"
/** The largest output upload the controller accepts (`maxOutputBytes`, docs/agent-protocol.md). */
const MAX_OUTPUT_BYTES = 4 * 2 ** 20

const runtime = ManagedRuntime.make(localEngine(home))
const other = ManagedRuntime.make(localEngine(home))
await runtime.runPromise(Effect.void)
await other.runPromise(Effect.void)

const producer = `head -c ${bytes} /dev/zero`

/** The floor: the same bytes through one pipe into this process. */
const pipeOnce = (): Promise<{ readonly firstToLastMs: number; readonly totalMs: number }> =>
  new Promise((resolve, reject) => {
    let seen = 0
    let first = 0
    const start = now()
    const child = spawn("/bin/sh", ["-c", producer], { stdio: ["ignore", "pipe", "ignore"] })
    child.stdout.on("data", (d: Buffer) => {
      if (seen === 0) first = now()
      seen += d.length
    })
    child.on("error", reject)
    child.on("close", () => (seen === bytes ? resolve({ firstToLastMs: now() - first, totalMs: now() - start }) : reject(new Error(`pipe gave ${seen} bytes`))))
  })

const sdkOnce = () =>
  runtime.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const start = now()
        const run = yield* launch({ command: producer })
        let seen = 0
        let first = 0
        yield* Stream.runForEach(run.output, (chunk) =>
          Effect.sync(() => {
            if (seen === 0) first = now()
            seen += chunk.data.length
          })
        )
        const last = now()
        const result = yield* run.result
        if (seen !== bytes || result.state !== "succeeded") {
          throw new Error(`attach saw ${seen} of ${bytes} bytes; run ${result.state}, exit ${result.exitCode}, ${result.error ?? "no error"}`)
        }
        return { firstToLastMs: last - first, totalMs: last - start }
      })
    )
  )

/** Epoch ms with sub-millisecond precision, comparable with Python's time.time(). */
const wallNow = () => performance.timeOrigin + performance.now()

const latencies = (text: string, at: number, into: Array<number>) => {
  for (const line of text.split("\n")) {
    if (line === "") continue
    const written = Number(line) * 1000
    if (Number.isFinite(written)) into.push(at - written)
  }
}

const latencyOnce = () =>
  runtime.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const script = `import sys, time\nfor i in range(${ticks}):\n    time.sleep(0.02)\n    sys.stdout.write('%.6f\\n' % time.time())\n    sys.stdout.flush()\n`
        const run = yield* launch({ command: `${python} -S -c "${script.replaceAll('"', '\\"')}"` })
        const local: Array<number> = []
        const remote: Array<number> = []
        // Lines can straddle chunks: keep the partial tail for the next one.
        const reader = (into: Array<number>) => {
          let tail = ""
          return (data: Uint8Array) => {
            const at = wallNow()
            const text = tail + Buffer.from(data).toString("utf8")
            const cut = text.lastIndexOf("\n")
            tail = text.slice(cut + 1)
            latencies(text.slice(0, cut + 1), at, into)
          }
        }
        const readRemote = reader(remote)
        const remoteFiber = yield* Effect.fork(
          Effect.promise(() => other.runPromise(Stream.runForEach(attach(run.id), (c) => Effect.sync(() => readRemote(c.data)))))
        )
        const readLocal = reader(local)
        yield* Stream.runForEach(run.output, (c) => Effect.sync(() => readLocal(c.data)))
        yield* Fiber.join(remoteFiber)
        yield* run.result
        return { local, remote }
      })
    )
  )

/**
 * The store alone: the same bytes appended in the agent's largest uploads (4 MiB, what it sends
 * a fast writer's output in) and read back, on a file of its own, with no agent, HTTP or attach
 * in the way. Every byte of attach output goes through both, so this bounds what attach can
 * reach on this disk.
 */
const storeOnce = () =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const store = yield* SqliteStore.makeScoped({ filename: join(home, `store-only-${Date.now()}.db`) })
        yield* seedLaunches(store, { count: 1 })
        const [run] = yield* store.listRuns()
        if (run === undefined) throw new Error("no seeded run")
        const chunk = new Uint8Array(MAX_OUTPUT_BYTES)
        const start = now()
        let offset = 0
        while (offset < bytes) offset = yield* store.appendOutput(run.id, "stdout", offset, chunk.subarray(0, Math.min(chunk.length, bytes - offset)))
        const appendMs = now() - start
        let after = 0
        let seen = 0
        const readStart = now()
        for (;;) {
          const chunks = yield* store.readOutput(run.id, after, 512)
          if (chunks.length === 0) break
          after = chunks[chunks.length - 1]!.seq
          for (const c of chunks) seen += c.data.length
        }
        if (seen !== bytes) throw new Error(`store read back ${seen} of ${bytes} bytes`)
        return { appendMs, readMs: now() - readStart }
      })
    )
  )

/**
 * The disk alone: the same bytes written to a new file in 4 MiB writes (no fsync, as the store
 * does not sync either), then removed. Output is kept, so every byte lands in pages the kernel
 * has to hand out fresh; this is the floor under every durable store on this machine.
 */
const diskOnce = (): number => {
  const path = join(home, `disk-only-${Date.now()}.bin`)
  const chunk = Buffer.alloc(MAX_OUTPUT_BYTES, 0x61)
  const fd = openSync(path, "w", 0o600)
  const start = now()
  try {
    let written = 0
    while (written < bytes) written += writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - written))
  } finally {
    closeSync(fd)
  }
  const ms = now() - start
  rmSync(path, { force: true })
  return ms
}

const rounds = Number(process.env["BENCH_ROUNDS"] ?? "1")
const pipe: Array<{ firstToLastMs: number; totalMs: number }> = []
const sdk: Array<{ firstToLastMs: number; totalMs: number }> = []
/**
 * A full collection before each timed transfer: 512 MiB read through the pipe leaves that much
 * garbage, which the collector otherwise clears during the next transfer, whichever it is.
 */
const collectGarbage = (): void => {
  const bun: unknown = Reflect.get(globalThis, "Bun")
  const gc: unknown = typeof bun === "object" && bun !== null ? Reflect.get(bun, "gc") : undefined
  if (typeof gc === "function") gc.call(bun, true)
}
for (let i = 0; i < rounds; i++) {
  collectGarbage()
  pipe.push(await pipeOnce())
  collectGarbage()
  sdk.push(await sdkOnce())
}
const storeOnly = await storeOnce()
const diskMs = diskOnce()
const lat = await latencyOnce()
await other.dispose()
await runtime.dispose()
process.stdout.write(JSON.stringify({ bytes, pipe, sdk, storeOnly, diskMs, local: lat.local, remote: lat.remote }) + "\n")
process.exit(0)
