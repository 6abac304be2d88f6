/**
 * The floor B1 and B3 measure the SDK against: the sandbox the local provider starts (same
 * unshare flags, same hostname step, same interpreter with the same flags), started by hand,
 * its interpreter running `echo hi` with os.system. No SDK, no store, no agent.
 */
import { LocalApi } from "@skyrepl/provider-local"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { existsSync, mkdirSync } from "node:fs"
import { join } from "node:path"
import { now, which } from "../harness.ts"

/** ms from the spawn to the first byte on the sandbox's stdout, and to its exit. */
export interface HandStarted {
  readonly first: number
  readonly exited: number
}

/** Whether the floor runs in namespaces (as the provider's sandboxes do where it can), and how it is started. */
export const handStarter = async (home: string) => {
  /** The interpreter the local provider picks (see provider-local options.ts). */
  const python = process.env["SKYREPL_PYTHON"] ?? (existsSync("/usr/bin/python3") ? "/usr/bin/python3" : which("python3"))
  if (python === null) throw new Error("no python3")
  const namespaces = await Effect.runPromise(LocalApi.probeNamespaces(which("unshare")))
  const workdir = join(home, "baseline")
  mkdirSync(workdir, { recursive: true })

  const start = (i: number): Promise<HandStarted> =>
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
      const started = now()
      const child = spawn(file, args, {
        cwd: workdir,
        env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin" },
        detached: true,
        stdio: ["ignore", "pipe", "ignore"]
      })
      child.stdout.once("data", () => {
        first = now() - started
      })
      child.on("error", reject)
      child.on("close", (code) =>
        code === 0 && first !== null ? resolve({ first, exited: now() - started }) : reject(new Error(`hand-started sandbox exited ${code}`))
      )
    })

  return { python, namespaces: namespaces !== null, start }
}
