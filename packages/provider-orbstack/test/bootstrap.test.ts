import type { InstanceRef, ProviderService } from "@skyrepl/core"
import { type FakeController, makeFakeController } from "@skyrepl/core/testing"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { readFileSync } from "node:fs"
import { afterAll, afterEach } from "vitest"
import { OrbStackProvider } from "../src/index.ts"
import { eventually, makeEmulator } from "./helpers.ts"

const emulator = makeEmulator()

afterEach(() => emulator.setFaults(""))
afterAll(async () => {
  const left = emulator.processes()
  await emulator.dispose()
  expect(left).toEqual([])
})

/** Spawns `name`; the scope terminates it whatever happens. */
const spawnScoped = (provider: ProviderService, controller: FakeController, name: string) =>
  Effect.gen(function* () {
    const spec = yield* provider.parseSpec(undefined)
    const bootstrap = yield* controller.bootstrap(name)
    const result = yield* Effect.acquireRelease(provider.spawn(name, spec, bootstrap), () =>
      Effect.orDie(provider.terminate({ name, providerRef: null, region: null }))
    )
    const ref: InstanceRef = { name, providerRef: result.providerRef, region: null }
    return { ref, result, bootstrap }
  })

const inMachine = (name: string, ...command: ReadonlyArray<string>) =>
  Effect.promise(() => emulator.orbctl(["run", "-m", name, "-u", "root", ...command]))

const cmdline = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ")
  } catch {
    return ""
  }
}

const environ = (pid: number): ReadonlyArray<string> => {
  try {
    return readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")
  } catch {
    return []
  }
}

describe("the bootstrap", () => {
  it.live("installs and starts the agent: it registers, logs to /tmp/bootstrap.log, and no token is on show", () =>
    Effect.gen(function* () {
      const provider = yield* OrbStackProvider.make(emulator.options())
      const controller = yield* makeFakeController()
      const name = emulator.newName()
      const { result, bootstrap } = yield* spawnScoped(provider, controller, name)
      expect(result.bootstrapFailure).toBeUndefined()
      const registration = yield* controller.registration(name, "15 seconds")
      expect(registration.hostname).toBe(name)

      const log = yield* inMachine(name, "cat", "/tmp/bootstrap.log")
      expect(log.stdout).toContain(`skyrepl bootstrap of ${name}`)
      expect(log.stdout).toMatch(/agent started: pid \d+/)
      expect(log.stdout).not.toContain(bootstrap.token)

      const processes = emulator.processes().filter((p) => p.machine === name)
      const agent = processes.find((p) => cmdline(p.pid).includes("skyrepl_agent.py"))
      expect(agent).toBeDefined()
      if (agent === undefined) return
      const line = cmdline(agent.pid)
      expect(line).toContain(`--instance ${name}`)
      expect(line).toContain(`--shutdown command:orbctl stop '${name}'`)
      expect(line).toContain("--url http://host.orb.internal:")
      expect(environ(agent.pid)).not.toContain("SKYREPL_AGENT_ALLOW_POWEROFF=1")
      for (const p of processes) expect(cmdline(p.pid)).not.toContain(bootstrap.token)
    }).pipe(Effect.scoped)
  )

  it.live("a failing bootstrap is not fatal: the VM stays up with its log, and the failure is reported", () =>
    Effect.gen(function* () {
      emulator.setFaults("no-python")
      const provider = yield* OrbStackProvider.make(emulator.options())
      const controller = yield* makeFakeController()
      const name = emulator.newName()
      const { ref, result } = yield* spawnScoped(provider, controller, name)
      expect(result.bootstrapFailure).toContain(`bootstrap of ${name} failed`)
      expect(result.bootstrapFailure).toContain("python3 not found")
      expect(result.bootstrapFailure).toContain("/tmp/bootstrap.log")
      expect(yield* provider.describe(ref)).toBe("running")
      const log = yield* inMachine(name, "cat", "/tmp/bootstrap.log")
      expect(log.stdout).toContain("bootstrap failed: python3 not found")
      // What a launch that then times out shows of it: the log's last lines.
      const tail = yield* provider.consoleTail!(ref)
      expect(tail.at(-1)).toBe("bootstrap failed: python3 not found in the machine: the agent needs Python 3.8 or newer (see /tmp/bootstrap.log)")
      expect(tail[0]).toContain(`skyrepl bootstrap of ${name}`)
      yield* provider.terminate(ref)
      expect(yield* provider.describe(ref)).toBe("gone")
      expect(yield* provider.consoleTail!(ref)).toEqual([])
    }).pipe(Effect.scoped)
  )

  it.live("the dead-man switch stops the machine through orbctl: nothing runs, and the sweep still finds it", () =>
    Effect.gen(function* () {
      const provider = yield* OrbStackProvider.make(emulator.options())
      const name = emulator.newName()
      const ref: InstanceRef = { name, providerRef: null, region: null }
      yield* Effect.addFinalizer(() => Effect.orDie(provider.terminate(ref)))
      // The controller lives in a scope of its own; closing it is the controller dying.
      const controllerScope = yield* Scope.make()
      const controller = yield* makeFakeController({ heartbeatIntervalMs: 250, deadmanTimeoutMs: 1_500 }).pipe(
        Scope.extend(controllerScope)
      )
      const spec = yield* provider.parseSpec(undefined)
      yield* provider.spawn(name, spec, yield* controller.bootstrap(name))
      yield* controller.registration(name, "15 seconds")
      yield* Scope.close(controllerScope, Exit.void)
      yield* Effect.promise(() =>
        eventually("the agent to stop its machine", async () => {
          const machine = (await emulator.machines()).find((m) => m.name === name)
          return machine?.state === "stopped" && emulator.processes().length === 0
        })
      )
      expect(yield* provider.describe(ref)).toBe("stopping")
      expect((yield* provider.list()).find((i) => i.name === name)?.state).toBe("stopping")
      yield* provider.terminate(ref)
      expect(yield* provider.describe(ref)).toBe("gone")
    }).pipe(Effect.scoped)
  )
})
