import { formatInstanceName, newControlId, newId } from "@skyrepl/core"
import { removeStateHome } from "@skyrepl/core/testing"
import { Duration, Effect, type Scope } from "effect"
import { execa } from "execa"
import { mkdtempSync, readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { LocalApi } from "../src/index.ts"

/** Every name a test file creates starts with `repl-{controlId}-`, which /proc checks match. */
export const makeTestContext = () => {
  const controlId = newControlId()
  const home = mkdtempSync(join(tmpdir(), "skyrepl-local-test-"))
  return {
    controlId,
    home,
    newName: () => formatInstanceName({ controlId, manifestId: newId(), instanceId: newId() }),
    cleanupHome: () => removeStateHome(home)
  }
}

/** Live processes whose marker names one of this file's instances, whatever provider tag. */
export const leftovers = (controlId: string): ReadonlyArray<LocalApi.ProcessInfo> =>
  Effect.runSync(LocalApi.scanProcesses).filter(
    (p) => LocalApi.isLive(p) && p.instance !== null && p.instance.startsWith(`repl-${controlId}-`)
  )

export const cmdline = (pid: number): ReadonlyArray<string> => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`).toString("utf8").split("\0").filter((part) => part !== "")
  } catch {
    return []
  }
}

export const environ = (pid: number): ReadonlyArray<string> => {
  try {
    return readFileSync(`/proc/${pid}/environ`).toString("utf8").split("\0").filter((part) => part !== "")
  } catch {
    return []
  }
}

/** True while a process with this pid and start time is alive (pids are reused). */
export const stillAlive = (p: Pick<LocalApi.ProcessInfo, "pid" | "startTicks">): boolean =>
  Effect.runSync(LocalApi.scanProcesses).some((q) => q.pid === p.pid && q.startTicks === p.startTicks && LocalApi.isLive(q))

export const sandboxOf = (name: string): Effect.Effect<LocalApi.Sandbox | undefined, LocalApi.LocalApiError> =>
  Effect.map(LocalApi.scanProcesses, (processes) => LocalApi.findSandboxes(processes, "local").get(name))

/** Retries `check` until it yields a value, for at most `timeout`; for waits on other processes. */
export const eventually = <A, E, R>(
  check: Effect.Effect<A | undefined, E, R>,
  timeout: Duration.DurationInput,
  what: string
): Effect.Effect<A, E | Error, R> =>
  Effect.gen(function* () {
    const deadline = Date.now() + Duration.toMillis(Duration.decode(timeout))
    for (;;) {
      const value = yield* check
      if (value !== undefined) return value
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep(Duration.millis(50))
    }
  })

/**
 * Processes that look like SkyREPL's but are not the local provider's: one carrying a valid name
 * under another provider's tag, one carrying a malformed name under the local tag. Killed when
 * the scope closes.
 */
export const foreignProcesses = (controlId: string): Effect.Effect<ReadonlyArray<string>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const otherProvider = formatInstanceName({ controlId, manifestId: newId(), instanceId: newId() })
    const malformed = `repl-${controlId}-not-an-instance`
    for (const [instance, provider] of [
      [otherProvider, "elsewhere"],
      [malformed, "local"]
    ] as const) {
      yield* Effect.acquireRelease(
        Effect.sync(() =>
          execa("/bin/sleep", ["600"], {
            env: { [LocalApi.INSTANCE_MARKER]: instance, [LocalApi.PROVIDER_MARKER]: provider },
            extendEnv: false,
            stdio: "ignore",
            reject: false
          })
        ),
        (subprocess) =>
          Effect.promise(async () => {
            subprocess.kill("SIGKILL")
            await subprocess
          })
      )
    }
    // The markers are in /proc/PID/environ only once the exec happened.
    yield* eventually(
      Effect.sync(() => {
        const seen = new Set(leftovers(controlId).map((p) => p.instance))
        return seen.has(otherProvider) && seen.has(malformed) ? true : undefined
      }),
      "10 seconds",
      "the foreign processes to start"
    ).pipe(Effect.orDie)
    return [otherProvider, malformed]
  })

const require = createRequire(import.meta.url)

/**
 * How to run a TypeScript file in a separate process of the current runtime: Bun runs it
 * directly; Node 20 cannot, so it goes through vite-node (installed with vitest).
 */
export const typescriptRunner = (script: string): readonly [string, ReadonlyArray<string>] =>
  process.versions["bun"] !== undefined
    ? [process.execPath, [script]]
    : [process.execPath, [join(dirname(require.resolve("vite-node")), "..", "vite-node.mjs"), script]]

export const fixture = (file: string): string => fileURLToPath(new URL(`./fixtures/${file}`, import.meta.url))
