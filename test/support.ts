import { SkyRepl, type SkyReplSettings } from "@skyrepl/core"
import { LocalApi, LocalProvider } from "@skyrepl/provider-local"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { Duration, Effect } from "effect"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
// From its module, not `@skyrepl/core/testing`, whose index brings in vitest: this file is also
// imported by scripts the tests start as processes of their own (test/fixtures).
import { removeStateHome } from "../packages/core/src/testing/state-home.ts"

/** A fresh state home per test, removed afterwards by the caller. */
export const tempHome = (): string => mkdtempSync(join(tmpdir(), "skyrepl-test-"))

export const removeHome = removeStateHome

/** Short timings so lease and dead-man behaviour is observable within a test. */
export const testSettings = (home: string, overrides: Partial<SkyReplSettings> = {}): Partial<SkyReplSettings> => ({
  home,
  leaseTtl: Duration.seconds(3),
  heartbeatInterval: Duration.millis(250),
  deadmanTimeout: Duration.seconds(5),
  bootTimeout: Duration.seconds(20),
  ...overrides
})

export const engineLayer = (home: string, overrides: Partial<SkyReplSettings> = {}) =>
  SkyRepl.layer({
    providers: [LocalProvider.layer({ home })],
    store: SqliteStore.layer({ filename: join(home, "state.db") }),
    config: testSettings(home, overrides)
  })

/** Pids of live (non-zombie) processes carrying an instance's marker, read from /proc. */
export const processesOf = (name: string): Promise<ReadonlyArray<number>> =>
  Effect.runPromise(
    LocalApi.scanProcesses.pipe(
      Effect.map((ps) => ps.filter((p) => p.instance === name && p.state !== "Z").map((p) => p.pid))
    )
  )

/**
 * Pids of live processes whose command line is exactly `argv`, read with ps: for a process that
 * cleared its environment, which carries no instance marker any more.
 */
export const processesRunning = (argv: string): ReadonlyArray<number> =>
  spawnSync("ps", ["-eo", "pid=,stat=,args="], { encoding: "utf8" })
    .stdout.split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter(([, stat, ...args]) => stat !== undefined && !stat.startsWith("Z") && args.join(" ") === argv)
    .map(([pid]) => Number(pid))

/** Waits until `check` holds, polling; fails the test with `what` after `timeoutMs`. */
export const eventually = async (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`timed out waiting for: ${what}`)
}

export const text = (chunks: ReadonlyArray<{ readonly stream: string; readonly data: Uint8Array }>, stream = "stdout"): string =>
  Buffer.concat(chunks.filter((c) => c.stream === stream).map((c) => Buffer.from(c.data))).toString("utf8")

const repoRoot = join(import.meta.dirname, "..")

/** The `bun` that npm installed: child controllers run on it whatever runs the tests. */
export const bunBin = join(repoRoot, "node_modules", ".bin", "bun")

export interface Owner {
  readonly child: ChildProcess
  readonly launched: Promise<{ readonly runId: string; readonly name: string }>
  readonly exited: Promise<number | null>
  readonly output: () => string
}

/**
 * Starts test/fixtures/owner.ts: another process that launches `command` and owns it. `wrapper`
 * runs it under another program (its argv, followed by the owner's).
 */
export const startOwner = (home: string, command: string, env: Record<string, string> = {}, wrapper: ReadonlyArray<string> = []): Owner => {
  const argv = [...wrapper, bunBin, join(repoRoot, "test", "fixtures", "owner.ts"), home, command]
  const child = spawn(argv[0] ?? bunBin, argv.slice(1), {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let out = ""
  let err = ""
  child.stderr?.on("data", (d: Buffer) => (err += d.toString()))
  const launched = new Promise<{ runId: string; name: string }>((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString()
      const first = out.split("\n")[0]
      if (out.includes("\n") && first !== undefined) {
        const parsed: unknown = JSON.parse(first)
        if (typeof parsed === "object" && parsed !== null && "runId" in parsed && "name" in parsed && typeof parsed.runId === "string" && typeof parsed.name === "string") {
          resolve({ runId: parsed.runId, name: parsed.name })
        } else reject(new Error(`unexpected owner output: ${first}`))
      }
    })
    child.on("exit", () => reject(new Error(`owner exited before launching: ${err}`)))
  })
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  return { child, launched, exited, output: () => out }
}
