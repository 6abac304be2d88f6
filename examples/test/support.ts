// What the example tests share: a state home per test, the binaries a user would run, and /proc
// as the witness that an instance is gone.
import { removeStateHome } from "@skyrepl/core/testing"
import { LocalApi } from "@skyrepl/provider-local"
import { Effect } from "effect"
import { execa } from "execa"
import { existsSync, mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

export const repoRoot = join(import.meta.dirname, "..", "..")
export const examplesDir = join(repoRoot, "examples")

/** A program npm installed at the root, as `npx` would find it. */
export const bin = (name: string): string => join(repoRoot, "node_modules", ".bin", name)

/**
 * Limit for a test that runs a whole test runner or script: those start Node or Bun, transform
 * TypeScript and launch several instances, which on two loaded cores can take well over the 30 s
 * a unit test gets.
 */
export const runnerTimeout = 180_000

export const tempHome = (): string => mkdtempSync(join(tmpdir(), "skyrepl-example-test-"))

/**
 * Settings for the processes a test starts: its own state home, a fast heartbeat, and a dead-man
 * window long enough that any ending the tests observe came from the fixture, the client or a
 * lease — never from the agent giving up on its controller.
 */
export const exampleEnv = (home: string, extra: Record<string, string> = {}): Record<string, string> => ({
  SKYREPL_HOME: home,
  SKYREPL_HEARTBEAT_INTERVAL: "250ms",
  SKYREPL_DEADMAN_TIMEOUT: "60s",
  NO_COLOR: "1",
  ...extra
})

/** `repl` itself, against a test's state home. */
export const repl = (home: string, args: ReadonlyArray<string>, extra: Record<string, string> = {}) =>
  execa(bin("repl"), args, { env: exampleEnv(home, extra), reject: false, timeout: 60_000, stdin: "ignore" })

/**
 * Ends whatever a failed test left running in `home` through the product itself (`--own`: only
 * this home's instances, since test files run side by side), then removes the home.
 */
export const cleanUp = async (home: string): Promise<void> => {
  if (existsSync(join(home, "control-id")) && (await processesNamed(instancePrefix(home))).length > 0) {
    await repl(home, ["orphans", "--reap", "--min-age", "0", "--own"])
  }
  removeStateHome(home)
}

/** Pids of live processes of every instance whose name starts with `prefix`, from /proc. */
export const processesNamed = (prefix: string): Promise<ReadonlyArray<number>> =>
  Effect.runPromise(
    LocalApi.scanProcesses.pipe(
      Effect.map((ps) => ps.filter((p) => p.instance?.startsWith(prefix) === true && LocalApi.isLive(p)).map((p) => p.pid))
    )
  )

/** Pids of live processes of one instance. */
export const processesOf = (name: string): Promise<ReadonlyArray<number>> => processesNamed(name)

/** Every instance of a state home is named `repl-{controlId}-…`; its control id is in the home. */
export const instancePrefix = (home: string): string => `repl-${readFileSync(join(home, "control-id"), "utf8").trim()}-`

/** Instance names in a text, in order of appearance, without repeats. */
export const instanceNames = (text: string): ReadonlyArray<string> => [
  ...new Set(text.match(/repl-[0-9a-z]{8}-[0-9a-z]+-[0-9a-z]+/g) ?? [])
]

/** Waits until `check` holds, polling; fails with `what` after `timeoutMs`. */
export const eventually = async (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`timed out waiting for: ${what}`)
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
