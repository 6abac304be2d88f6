import { makeFakeController } from "@skyrepl/core/testing"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { afterAll, afterEach } from "vitest"
import { discoverIp, OrbStackApi, OrbStackProvider, type LookupHost } from "../src/index.ts"
import { systemLookup } from "../src/network.ts"
import { emulatorPath, makeEmulator } from "./helpers.ts"

const emulator = makeEmulator()
const orbctl = OrbStackApi.makeOrbctl({ command: emulatorPath, env: emulator.env, timeout: Duration.seconds(30) })

afterEach(async () => {
  emulator.setFaults("")
  const names = (await emulator.machines()).map((m) => m.name)
  if (names.length > 0) await emulator.orbctl(["delete", "-f", ...names])
})
afterAll(async () => {
  const left = emulator.processes()
  await emulator.dispose()
  expect(left).toEqual([])
})

/** A resolver that answers from a table and remembers what it was asked. */
const resolver = (answers: Readonly<Record<string, ReadonlyArray<string>>>) => {
  const asked: Array<string> = []
  const lookup: LookupHost = (host) =>
    Effect.sync(() => {
      asked.push(host)
      return answers[host] ?? []
    })
  return { asked, lookup }
}

const created = (faults = "") =>
  Effect.gen(function* () {
    emulator.setFaults(faults)
    const name = emulator.newName()
    yield* orbctl.create(name, { distro: "ubuntu", version: "noble", arch: "arm64" })
    return name
  })

/** The address the emulator leased to the machine (what `hostname -I` reports inside it). */
const leased = (name: string) =>
  Effect.promise(async () => (await emulator.orbctl(["run", "-m", name, "printenv", "ORBCTL_EMULATOR_IP"])).stdout.trim())

describe("the IP discovery chain: orbctl info, then DNS, then hostname -I", () => {
  it.live("orbctl info first; nothing else is asked", () =>
    Effect.gen(function* () {
      const name = yield* created()
      const { asked, lookup } = resolver({})
      const found = yield* discoverIp(orbctl, name, lookup)
      expect(found).toEqual({ ip: yield* leased(name), source: "info" })
      expect(asked).toEqual([])
    })
  )

  it.live("DNS for NAME.orb.local when orbctl info reports no address", () =>
    Effect.gen(function* () {
      const name = yield* created("no-ip-info")
      const { asked, lookup } = resolver({ [`${name}.orb.local`]: ["198.19.249.77"] })
      expect(yield* discoverIp(orbctl, name, lookup)).toEqual({ ip: "198.19.249.77", source: "dns" })
      expect(asked).toEqual([`${name}.orb.local`])
    })
  )

  it.live("hostname -I inside the machine when DNS does not know it either", () =>
    Effect.gen(function* () {
      const name = yield* created("no-ip-info")
      const { asked, lookup } = resolver({})
      expect(yield* discoverIp(orbctl, name, lookup)).toEqual({ ip: yield* leased(name), source: "run" })
      expect(asked).toEqual([`${name}.orb.local`])
    })
  )

  it.live("the system resolver, which has never heard of NAME.orb.local here, falls through to hostname -I", () =>
    Effect.gen(function* () {
      const name = yield* created("no-ip-info")
      expect(yield* discoverIp(orbctl, name, systemLookup)).toEqual({ ip: yield* leased(name), source: "run" })
    })
  )

  it.live("no address anywhere is how DHCP exhaustion shows: spawn fails with its message and deletes the machine", () =>
    Effect.gen(function* () {
      const name = yield* created("no-ip")
      const { lookup } = resolver({})
      expect(yield* discoverIp(orbctl, name, lookup)).toBeNull()

      const provider = yield* OrbStackProvider.make(emulator.options({ lookupHost: lookup }))
      const controller = yield* makeFakeController()
      const spawned = emulator.newName()
      const spec = yield* provider.parseSpec(undefined)
      const error = yield* Effect.flip(provider.spawn(spawned, spec, yield* controller.bootstrap(spawned)))
      expect(error.reason).toBe("quota")
      expect(error.message).toContain("DHCP/IP exhaustion")
      expect(error.message).toContain("no address")
      expect(error.message).toContain("docs/providers/orbstack.md#ip-address-exhaustion")
      expect((yield* Effect.promise(() => emulator.machines())).map((m) => m.name)).toEqual([name])
    }).pipe(Effect.scoped)
  )
})
