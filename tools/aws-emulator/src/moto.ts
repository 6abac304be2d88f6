import { Data, Duration, Effect, type Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { createServer } from "node:net"
import { delimiter } from "node:path"
import { fileURLToPath } from "node:url"

export class EmulatorError extends Data.TaggedError("EmulatorError")<{ readonly message: string; readonly cause?: unknown }> {}

/** Canonical-owned Ubuntu images (and decoys) that moto serves instead of its built-in list. */
export const canonicalAmisPath: string = fileURLToPath(new URL("./canonical-amis.json", import.meta.url))

/**
 * A directory Python imports `sitecustomize` from: it teaches moto what EC2 does and moto does
 * not (tags on the EBS snapshots CreateImage makes). First on moto's PYTHONPATH, so the server
 * itself stays the unchanged program, whichever Python runs it.
 */
export const motoPatchesPath: string = fileURLToPath(new URL("./moto-patches", import.meta.url))

/** Credentials moto accepts (it accepts any); exported so every client of one emulator agrees. */
export const motoCredentials = { accessKeyId: "testing", secretAccessKey: "testing" } as const

export interface MotoServer {
  readonly url: string
  readonly port: number
  readonly pid: number
}

export interface MotoOptions {
  /** Default: a free port. */
  readonly port?: number
  /** The moto server program. `SKYREPL_MOTO_SERVER`, else `moto_server` on PATH. */
  readonly command?: string
  /** Images moto serves; default: Canonical's Ubuntu images for noble, jammy and focal. */
  readonly amisPath?: string
  /** How long moto may take to answer its first request. Default 60 s (it imports a lot of Python). */
  readonly startTimeout?: Duration.DurationInput
}

/** Asks the kernel for a free loopback port. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => (port > 0 ? resolve(port) : reject(new Error("no port"))))
    })
  })

const answers = async (url: string): Promise<boolean> => {
  try {
    const response = await fetch(`${url}/moto-api/`, { signal: AbortSignal.timeout(1_000) })
    await response.arrayBuffer()
    return response.ok
  } catch {
    return false
  }
}

/**
 * moto runs under a small shell that holds our end of a pipe: when this process goes away, by
 * any means, the pipe closes, the shell stops moto, and no emulator is left running.
 */
const watchdog = 'cmd=$1; shift; "$cmd" "$@" & pid=$!; trap \'kill $pid 2>/dev/null\' TERM INT HUP; cat >/dev/null; kill $pid 2>/dev/null; wait $pid'

/** Starts `moto_server` on 127.0.0.1 for the life of the scope. */
export const startMoto = (options: MotoOptions = {}): Effect.Effect<MotoServer, EmulatorError, Scope.Scope> =>
  Effect.gen(function* () {
    const port = options.port ?? (yield* Effect.tryPromise({ try: freePort, catch: (cause) => new EmulatorError({ message: `no free port: ${String(cause)}`, cause }) }))
    const command = options.command ?? process.env["SKYREPL_MOTO_SERVER"] ?? "moto_server"
    const url = `http://127.0.0.1:${port}`
    let output = ""
    const child = yield* Effect.acquireRelease(
      Effect.try({
        try: (): ChildProcess => {
          const started = spawn("/bin/sh", ["-c", watchdog, "moto-watchdog", command, "-H", "127.0.0.1", "-p", String(port)], {
            env: {
              ...process.env,
              MOTO_AMIS_PATH: options.amisPath ?? canonicalAmisPath,
              PYTHONPATH: [motoPatchesPath, ...(process.env["PYTHONPATH"] ?? "").split(delimiter).filter((p) => p !== "")].join(delimiter)
            },
            stdio: ["pipe", "pipe", "pipe"],
            detached: true
          })
          const keep = (chunk: Buffer) => {
            output = (output + chunk.toString()).slice(-4_000)
          }
          started.stdout?.on("data", keep)
          started.stderr?.on("data", keep)
          return started
        },
        catch: (cause) => new EmulatorError({ message: `cannot start ${command}: ${String(cause)}`, cause })
      }),
      (started) =>
        Effect.async<void>((resume) => {
          if (started.exitCode !== null || started.signalCode !== null) return resume(Effect.void)
          const kill = setTimeout(() => {
            if (started.pid !== undefined) {
              try {
                process.kill(-started.pid, "SIGKILL")
              } catch {
                // Already gone.
              }
            }
          }, 5_000)
          started.once("exit", () => {
            clearTimeout(kill)
            resume(Effect.void)
          })
          started.stdin?.end()
        })
    )
    const deadline = Date.now() + Duration.toMillis(Duration.decode(options.startTimeout ?? Duration.seconds(60)))
    for (;;) {
      if (child.exitCode !== null) {
        return yield* new EmulatorError({ message: `${command} exited with status ${child.exitCode}: ${output.trim()}` })
      }
      if (yield* Effect.promise(() => answers(url))) break
      if (Date.now() > deadline) return yield* new EmulatorError({ message: `${command} did not answer on ${url}: ${output.trim()}` })
      yield* Effect.sleep(Duration.millis(50))
    }
    return { url, port, pid: child.pid ?? 0 }
  })
