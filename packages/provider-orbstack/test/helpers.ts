import { formatInstanceName, newControlId, newId } from "@skyrepl/core"
import { Effect, type Scope } from "effect"
import { execa } from "execa"
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { delimiter, join } from "node:path"
import { fileURLToPath } from "node:url"
import { OrbStackProvider, type OrbStackProviderOptions } from "../src/index.ts"

export const emulatorDir = fileURLToPath(new URL("../emulator", import.meta.url))
export const emulatorPath = join(emulatorDir, "orbctl")

export interface MachineJson {
  readonly id: string
  readonly name: string
  readonly state: string
}

/** A process of an emulated machine, found by the markers every such process carries. */
export interface MachineProcess {
  readonly pid: number
  readonly machine: string
}

const markersOf = (pid: string): Map<string, string> => {
  const out = new Map<string, string>()
  let raw: Buffer
  try {
    raw = readFileSync(`/proc/${pid}/environ`)
  } catch {
    return out
  }
  for (const entry of raw.toString("utf8").split("\0")) {
    const eq = entry.indexOf("=")
    if (eq > 0 && entry.startsWith("ORBCTL_EMULATOR_")) out.set(entry.slice(0, eq), entry.slice(eq + 1))
  }
  return out
}

const isZombie = (pid: string): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1")
    return /^[ZXx]/.test(stat.slice(stat.lastIndexOf(")") + 2))
  } catch {
    return true
  }
}

/**
 * One emulated OrbStack: its own state directory, so test files running side by side never see
 * each other's machines. Every name a file creates carries its control id.
 */
export const makeEmulator = () => {
  const home = mkdtempSync(join(tmpdir(), "orbctl-emulator-test-"))
  const controlId = newControlId()
  const env = { ORBCTL_EMULATOR_HOME: home }
  /** For child processes (the CLI): the emulator's folder first on PATH, as on a Mac with OrbStack. */
  const pathEnv = { ...env, PATH: `${emulatorDir}${delimiter}${process.env["PATH"] ?? ""}` }

  const orbctl = (args: ReadonlyArray<string>, input?: string) =>
    execa(emulatorPath, args, { env, reject: false, timeout: 60_000, ...(input === undefined ? { stdin: "ignore" as const } : { input }) })

  return {
    home,
    controlId,
    env,
    pathEnv,
    orbctl,
    newName: () => formatInstanceName({ controlId, manifestId: newId(), instanceId: newId() }),
    /** Provider options pointing at this emulator. */
    options: (extra: OrbStackProviderOptions = {}): OrbStackProviderOptions => ({
      orbctl: emulatorPath,
      orbctlEnv: env,
      ...extra
    }),
    layer: (extra: OrbStackProviderOptions = {}) => OrbStackProvider.layer({ orbctl: emulatorPath, orbctlEnv: env, ...extra }),
    /** Switches the emulator's fault modes (replacing the previous ones); "" turns them off. */
    setFaults: (faults: string) => writeFileSync(join(home, "faults"), faults),
    machines: async (): Promise<ReadonlyArray<MachineJson>> => {
      const result = await orbctl(["list", "-f", "json"])
      if (result.exitCode !== 0) throw new Error(`orbctl list failed: ${result.stderr}`)
      return JSON.parse(result.stdout) as ReadonlyArray<MachineJson>
    },
    /** Live processes of this emulator's machines, read from /proc. */
    processes: (): ReadonlyArray<MachineProcess> =>
      readdirSync("/proc")
        .filter((entry) => /^\d+$/.test(entry))
        .flatMap((pid) => {
          const markers = markersOf(pid)
          const machine = markers.get("ORBCTL_EMULATOR_MACHINE")
          return markers.get("ORBCTL_EMULATOR_HOME") === home && machine !== undefined && !isZombie(pid)
            ? [{ pid: Number(pid), machine }]
            : []
        }),
    /** Deletes every machine (whatever a failed test left) and the state directory. */
    dispose: async () => {
      const list = await orbctl(["list", "-q"])
      const names = list.stdout.split("\n").filter((n) => n !== "")
      if (names.length > 0) await orbctl(["delete", "-f", ...names])
      rmSync(home, { recursive: true, force: true })
    }
  }
}

export type Emulator = ReturnType<typeof makeEmulator>

/**
 * Machines on the emulator that are not SkyREPL instances: a user's own machine, a name that
 * only looks like one, a snapshot. Deleted when the scope closes.
 */
export const foreignMachines = (emulator: Emulator): Effect.Effect<ReadonlyArray<string>, never, Scope.Scope> => {
  const names = ["dev-box", `repl-${emulator.controlId}-not-an-instance`, "replsnap-foreign"]
  return Effect.acquireRelease(
    Effect.promise(async () => {
      for (const name of names) {
        const created = await emulator.orbctl(["create", "ubuntu:jammy", name])
        if (created.exitCode !== 0) throw new Error(`cannot create ${name}: ${created.stderr}`)
      }
      return names
    }),
    () => Effect.promise(() => emulator.orbctl(["delete", "-f", ...names]))
  )
}

/** Sleeps without Effect's clock, for tests that wait on other processes. */
export const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it holds; fails with `what` after `timeoutMs`. */
export const eventually = async (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await pause(100)
  }
  throw new Error(`timed out waiting for: ${what}`)
}
