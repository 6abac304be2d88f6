import { providerSuite } from "@skyrepl/core/testing"
import { afterAll, expect } from "vitest"
import { foreignMachines, makeEmulator } from "./helpers.ts"

const emulator = makeEmulator()
// Where namespaces are unavailable the emulator's machines are plain process groups; the
// provider cannot tell, and must pass the same contract.
const processGroups = makeEmulator()

const validSpecs = ["", "ubuntu", "ubuntu:noble", "ubuntu:24.04", "ubuntu:jammy:amd64", "ubuntu:22.04:arm64", "ubuntu:focal", " ubuntu:20.04:amd64 "]
const invalidSpecs = ["debian", "UBUNTU", "ubuntu:bionic", "ubuntu:18.04", "ubuntu:noble:x86_64", "ubuntu:noble:arm64:large", "ubuntu::arm64", ":noble", "t4g.nano", "sandbox"]

providerSuite("orbstack provider on the orbctl emulator", {
  layer: () => emulator.layer(),
  validSpecs,
  invalidSpecs,
  spawnSpec: "ubuntu:noble",
  controlId: emulator.controlId,
  foreignResources: () => foreignMachines(emulator),
  bootTimeout: "20 seconds"
})

providerSuite("orbstack provider on the orbctl emulator, machines as process groups", {
  layer: () => processGroups.layer({ orbctlEnv: { ...processGroups.env, ORBCTL_EMULATOR_ISOLATION: "process" } }),
  validSpecs,
  invalidSpecs,
  spawnSpec: "ubuntu:jammy:amd64",
  controlId: processGroups.controlId,
  foreignResources: () => foreignMachines(processGroups),
  bootTimeout: "20 seconds"
})

afterAll(async () => {
  // Every process of every machine is gone once its machine is: read from /proc, not believed.
  // Whatever the verdict, the emulators' machines are deleted before it is given.
  const left: Array<string> = []
  for (const each of [emulator, processGroups]) {
    left.push(...each.processes().map((p) => p.machine), ...(await each.machines()).map((m) => m.name))
    await each.dispose()
  }
  expect(left).toEqual([])
})
