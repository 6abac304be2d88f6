import { Effect, Schema } from "effect"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../../../", import.meta.url))
const worker = fileURLToPath(new URL("./fixtures/worker.ts", import.meta.url))

/**
 * Bun runs TypeScript itself; Node needs a loader, and vite-node comes with vitest, so the
 * children run on the same runtime, and therefore the same SQLite driver, as the test.
 */
const command = (args: ReadonlyArray<string>): [string, Array<string>] =>
  process.versions.bun !== undefined
    ? [process.execPath, [worker, ...args]]
    : [process.execPath, [`${root}node_modules/vite-node/vite-node.mjs`, worker, ...args]]

export interface ChildResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

export class ChildFailed extends Schema.TaggedError<ChildFailed>()("ChildFailed", {
  message: Schema.String
}) {}

/**
 * Starts one worker per argument list and, once every one of them has printed `ready`, tells
 * them all to go at once, so that their work really overlaps instead of being spread out by
 * the seconds each takes to start.
 */
export const runTogether = (
  argLists: ReadonlyArray<ReadonlyArray<string>>
): Effect.Effect<ReadonlyArray<ChildResult>, ChildFailed> =>
  Effect.async<ReadonlyArray<ChildResult>, ChildFailed>((resume) => {
    let waiting = argLists.length
    let settled = 0
    const results: Array<ChildResult> = []
    const children = argLists.map((args, index) => {
      const [file, argv] = command(args)
      const child = spawn(file, argv, { cwd: root, stdio: ["pipe", "pipe", "pipe"] })
      let stdout = ""
      let stderr = ""
      let ready = false
      child.stdout.setEncoding("utf8").on("data", (data: string) => {
        stdout += data
        if (!ready && stdout.includes("ready\n")) {
          ready = true
          waiting -= 1
          if (waiting === 0) for (const c of children) c.stdin.write("go\n")
        }
      })
      child.stderr.setEncoding("utf8").on("data", (data: string) => {
        stderr += data
      })
      child.on("error", (error) => resume(Effect.fail(new ChildFailed({ message: `worker ${index}: ${error.message}` }))))
      child.on("close", (code) => {
        results[index] = { code, stdout, stderr }
        settled += 1
        // A worker that dies before `ready` would leave the others waiting for ever.
        if (!ready) for (const c of children) c.stdin.end()
        if (settled === argLists.length) resume(Effect.succeed(results))
      })
      return child
    })
    return Effect.sync(() => {
      for (const child of children) if (child.exitCode === null) child.kill("SIGKILL")
    })
  })

/** The worker's answer: the last line it printed, decoded with `schema`. */
export const lastLine = <A, I>(schema: Schema.Schema<A, I>, result: ChildResult) =>
  Schema.decodeUnknown(Schema.parseJson(schema))(result.stdout.trim().split("\n").at(-1) ?? "")
