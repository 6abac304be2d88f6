import { providerSuite } from "@skyrepl/core/testing"
import { afterAll, expect } from "vitest"
import { LocalProvider } from "../src/index.ts"
import { foreignProcesses, leftovers, makeTestContext } from "./helpers.ts"

const context = makeTestContext()

const validSpecs = ["sandbox", "", "process", "  process "]
const invalidSpecs = ["vm", "SANDBOX", "sandbox:large", "t4g.nano", "process group", "local"]

providerSuite("local provider with namespaces", {
  layer: () => LocalProvider.layer({ home: context.home, isolation: "namespaces" }),
  validSpecs,
  invalidSpecs,
  spawnSpec: "sandbox",
  controlId: context.controlId,
  foreignResources: () => foreignProcesses(context.controlId)
})

providerSuite("local provider with plain process groups", {
  layer: () => LocalProvider.layer({ home: context.home, isolation: "none" }),
  validSpecs,
  invalidSpecs,
  spawnSpec: "process",
  controlId: context.controlId,
  foreignResources: () => foreignProcesses(context.controlId)
})

afterAll(() => {
  try {
    expect(leftovers(context.controlId).map((p) => `${p.pid} ${p.instance ?? ""}`)).toEqual([])
  } finally {
    context.cleanupHome()
  }
})
