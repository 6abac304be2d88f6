import type { ProviderError, ProviderService } from "@skyrepl/core"
import { makeFakeController } from "@skyrepl/core/testing"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import { chmodSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, afterEach } from "vitest"
import { OrbStackProvider } from "../src/index.ts"
import { emulatorPath, makeEmulator } from "./helpers.ts"

const emulator = makeEmulator()

afterEach(() => emulator.setFaults(""))
afterAll(async () => {
  const left = emulator.processes()
  await emulator.dispose()
  expect(left).toEqual([])
})

const spec = { provider: "orbstack", canonical: "ubuntu:noble:amd64", region: null, attributes: { distro: "ubuntu", version: "noble", release: "24.04", arch: "amd64" } }

/** Spawns `name`, expecting failure, and returns the error. */
const failedSpawn = (provider: ProviderService, name: string) =>
  Effect.scoped(
    Effect.gen(function* () {
      const controller = yield* makeFakeController()
      const bootstrap = yield* controller.bootstrap(name)
      return yield* Effect.flip(provider.spawn(name, spec, bootstrap))
    })
  )

/** Spawns and terminates `name`, expecting both to work. */
const cycle = (provider: ProviderService, name: string) =>
  Effect.scoped(
    Effect.gen(function* () {
      const controller = yield* makeFakeController()
      const bootstrap = yield* controller.bootstrap(name)
      yield* provider.spawn(name, spec, bootstrap)
      yield* provider.terminate({ name, providerRef: null, region: null })
    })
  )

const leftNothing = Effect.promise(async () => {
  expect((await emulator.machines()).filter((m) => m.name.startsWith("repl-"))).toEqual([])
  expect(emulator.processes()).toEqual([])
})

describe("known failures, each with its own message", () => {
  const messages = new Map<string, string>()
  const remember = (label: string, error: ProviderError) => messages.set(label, error.message)

  it.live("orbctl missing: a clear error on first use, never when the provider is built", () =>
    Effect.gen(function* () {
      const provider = yield* OrbStackProvider.make({ orbctl: "/nonexistent/orbctl" })
      for (const error of [yield* Effect.flip(provider.list()), yield* failedSpawn(provider, emulator.newName())]) {
        expect(error.reason).toBe("unavailable")
        expect(error.message).toBe("orbctl not found (/nonexistent/orbctl): OrbStack is macOS-only; install it and launch it once")
      }
      const byName = yield* OrbStackProvider.make({ orbctl: "orbctl", orbctlEnv: { PATH: "/nonexistent" } })
      const error = yield* Effect.flip(byName.list())
      remember("missing", error)
      expect(error.message).toBe("orbctl not found: OrbStack is macOS-only; install it and launch it once")
      // With no OrbStack here, no machine of it can exist: an instance record left by a launch
      // that never reached OrbStack is gone, and ending it succeeds.
      const ref = { name: emulator.newName(), providerRef: null, region: null }
      expect(yield* provider.describe(ref)).toBe("gone")
      yield* provider.terminate(ref)
    })
  )

  it.live("orbctl version runs once, on first use, and not before", () =>
    Effect.gen(function* () {
      const calls = join(emulator.home, "calls.log")
      const wrapper = join(emulator.home, "orbctl-wrapper")
      writeFileSync(wrapper, `#!/bin/sh\necho "$1" >> '${calls}'\nexec '${emulatorPath}' "$@"\n`)
      chmodSync(wrapper, 0o755)
      writeFileSync(calls, "")
      const provider = yield* OrbStackProvider.make({ orbctl: wrapper, orbctlEnv: emulator.env })
      expect(readFileSync(calls, "utf8")).toBe("")
      yield* provider.list()
      yield* provider.list()
      yield* provider.describe({ name: emulator.newName(), providerRef: null, region: null })
      expect(readFileSync(calls, "utf8").split("\n").filter((l) => l !== "")).toEqual(["version", "list", "list", "info"])
    })
  )

  it.live("a malformed SKYREPL_ORBSTACK_BOOT_TIMEOUT is refused on first use, naming the variable", () =>
    Effect.gen(function* () {
      const provider = yield* OrbStackProvider.make(emulator.options()).pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["SKYREPL_ORBSTACK_BOOT_TIMEOUT", "30"]])))
      )
      const error = yield* Effect.flip(provider.list())
      expect(error.reason).toBe("invalid-request")
      expect(error.message).toContain("SKYREPL_ORBSTACK_BOOT_TIMEOUT")
    })
  )

  it.live("duration options take the CLI's forms too; one in no form is refused on first use, naming the option, not thrown from the layer", () =>
    Effect.gen(function* () {
      // Duration.decode threw "Invalid DurationInput" for each as the layer was built.
      const given = yield* Effect.exit(OrbStackProvider.make({ ...emulator.options(), bootTimeout: "30s", commandTimeout: "1m", pollInterval: "100ms" }))
      expect(given._tag === "Success" ? (given.value.configurationProblem ?? "none") : String(given.cause)).toBe("none")
      // From plain JavaScript, or behind a cast.
      const options = { ...emulator.options(), bootTimeout: "soon" } as unknown as Parameters<typeof OrbStackProvider.make>[0]
      const bad = yield* Effect.exit(OrbStackProvider.make(options))
      expect(bad._tag === "Success" ? (bad.value.configurationProblem ?? "none") : String(bad.cause)).toBe(
        'the bootTimeout option: "soon" is not a duration (give e.g. "30s", "5m", Duration.minutes(5) or a number of milliseconds)'
      )
      // A poll of 0 spun on orbctl; an infinite one never asked again; 10n was 10 ns.
      const problemOf = (extra: object) =>
        Effect.map(Effect.exit(OrbStackProvider.make({ ...emulator.options(), ...extra } as Parameters<typeof OrbStackProvider.make>[0])), (exit) =>
          exit._tag === "Success" ? (exit.value.configurationProblem ?? "none") : String(exit.cause)
        )
      expect([
        yield* problemOf({ pollInterval: 0 }),
        yield* problemOf({ commandTimeout: Number.POSITIVE_INFINITY }),
        yield* problemOf({ bootTimeout: 10n }),
        yield* problemOf({ orbctl: Object("orbctl") })
      ]).toEqual([
        "the pollInterval option: 0 is no time at all; give at least 1ms",
        "the commandTimeout option: Infinity is not a finite duration",
        'the bootTimeout option: 10n is a bigint, which Effect reads as nanoseconds (a number is milliseconds); give a number of milliseconds, "30s" or Duration.seconds(30)',
        'OrbStackProvider options: orbctl: new String("orbctl") is an object, not a string; give the value itself'
      ])
    })
  )

  it.live("options from plain JavaScript that are no object, or name an option there is not, are its configuration problem, not a TypeError at launch", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [null, "OrbStackProvider options must be an object, not null"],
        [{ ...emulator.options(), bootTimout: "30s" }, '"bootTimout" is not one of the OrbStackProvider options (orbctl, orbctlEnv, bootTimeout,']
      ]
      for (const [options, said] of cases) {
        const made = yield* Effect.exit(OrbStackProvider.make(options as Parameters<typeof OrbStackProvider.make>[0]))
        expect(made._tag === "Success" ? (made.value.configurationProblem ?? "none") : String(made.cause)).toContain(said)
      }
    })
  )

  it.live("IP exhaustion: switched on, create fails and points to the reset procedure", () =>
    Effect.gen(function* () {
      emulator.setFaults("ip-exhaustion")
      const provider = yield* OrbStackProvider.make(emulator.options())
      const error = yield* failedSpawn(provider, emulator.newName())
      remember("ip", error)
      expect(error.reason).toBe("quota")
      expect(error.retryable).toBe(false)
      expect(error.message).toContain("DHCP/IP exhaustion")
      expect(error.message).toContain("missing IP address")
      expect(error.message).toContain("docs/providers/orbstack.md#ip-address-exhaustion")
      yield* leftNothing
    })
  )

  it.live("IP exhaustion after rapid create/delete cycles: released addresses are still leased", () =>
    Effect.gen(function* () {
      emulator.setFaults("ip-pool=2 lease-hold=600")
      const provider = yield* OrbStackProvider.make(emulator.options())
      yield* cycle(provider, emulator.newName())
      yield* cycle(provider, emulator.newName())
      const error = yield* failedSpawn(provider, emulator.newName())
      expect(error.reason).toBe("quota")
      expect(error.message).toContain("docs/providers/orbstack.md#ip-address-exhaustion")
      yield* leftNothing
    })
  )

  it.live("slow boot: a machine not running within the boot timeout is a boot time-out, and is deleted", () =>
    Effect.gen(function* () {
      emulator.setFaults("slow-boot=30")
      const provider = yield* OrbStackProvider.make(emulator.options({ bootTimeout: "1 second" }))
      const name = emulator.newName()
      const error = yield* failedSpawn(provider, name)
      remember("boot", error)
      expect(error.reason).toBe("unavailable")
      expect(error.message).toContain("boot time-out")
      expect(error.message).toContain(name)
      expect(error.message).toContain("1s")
      expect(error.message).toContain("starting")
      yield* leftNothing
    })
  )

  it.live("VM not found: a machine that disappears while it boots", () =>
    Effect.gen(function* () {
      emulator.setFaults("missing-vm")
      const provider = yield* OrbStackProvider.make(emulator.options())
      const name = emulator.newName()
      const error = yield* failedSpawn(provider, name)
      remember("vm", error)
      expect(error.reason).toBe("not-found")
      expect(error.message).toContain("VM not found")
      expect(error.message).toContain(name)
      yield* leftNothing
    })
  )

  it("every failure has a message of its own", () => {
    expect([...messages.keys()].sort()).toEqual(["boot", "ip", "missing", "vm"])
    expect(new Set(messages.values()).size).toBe(messages.size)
  })
})

describe("terminateSync, for a process that is exiting", () => {
  it.live("deletes the machine before it returns, and leaves other machines alone", () =>
    Effect.gen(function* () {
      const name = emulator.newName()
      for (const machine of [name, "dev-box"]) {
        expect((yield* Effect.promise(() => emulator.orbctl(["create", "ubuntu", machine]))).exitCode).toBe(0)
      }
      const provider = yield* OrbStackProvider.make(emulator.options())
      provider.terminateSync?.({ name, providerRef: null, region: null })
      provider.terminateSync?.({ name: "dev-box", providerRef: null, region: null })
      expect((yield* Effect.promise(() => emulator.machines())).map((m) => m.name)).toEqual(["dev-box"])
      expect(emulator.processes().filter((p) => p.machine === name)).toEqual([])
      yield* Effect.promise(() => emulator.orbctl(["delete", "-f", "dev-box"]))
    })
  )
})

describe("names that are not SkyREPL's", () => {
  it.live("are refused, so nothing else on the Mac is ever stopped or deleted", () =>
    Effect.gen(function* () {
      const created = yield* Effect.promise(() => emulator.orbctl(["create", "ubuntu", "dev-box"]))
      expect(created.exitCode).toBe(0)
      const provider = yield* OrbStackProvider.make(emulator.options())
      const ref = { name: "dev-box", providerRef: null, region: null }
      expect((yield* Effect.flip(provider.terminate(ref))).reason).toBe("invalid-request")
      expect((yield* Effect.flip(provider.describe(ref))).reason).toBe("invalid-request")
      expect((yield* Effect.promise(() => emulator.machines())).map((m) => [m.name, m.state])).toEqual([["dev-box", "running"]])
      yield* Effect.promise(() => emulator.orbctl(["delete", "-f", "dev-box"]))
    })
  )
})
