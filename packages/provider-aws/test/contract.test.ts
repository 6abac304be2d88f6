import { formatInstanceName, newControlId, newId } from "@skyrepl/core"
import { providerSuite } from "@skyrepl/core/testing"
import { Duration, Effect, Layer } from "effect"
import { afterAll } from "vitest"
import { AwsProvider } from "../src/index.ts"
import { type MotoServer, optionsFor, removeDir, runRaw, startBootHarness, startMoto, tempDir, REGION } from "./support.ts"

// moto plus the boot harness, so the agent in each instance's user-data really starts and
// registers with the suite's fake controller.
const dir = tempDir("contract")
const controlId = newControlId()
let moto: MotoServer | null = null

const withEmulator = () =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const server = yield* startMoto()
      moto = server
      yield* startBootHarness({ endpoint: server.url, regions: [REGION], workDir: `${dir}/harness` })
      return AwsProvider.layer(optionsFor(server, dir))
    }).pipe(Effect.orDie)
  )

providerSuite("aws provider on moto", {
  layer: withEmulator,
  validSpecs: ["", "t3.micro", " t4g.nano ", "c8g.large", "m7i-flex.large", "ubuntu:noble:amd64", "ubuntu:jammy:arm64", "ubuntu:focal:amd64"],
  invalidSpecs: [
    "ubuntu",
    "ubuntu:noble",
    "ubuntu:noble:x86_64",
    "ubuntu:trusty:amd64",
    "debian:bookworm:amd64",
    "ubuntu:noble:amd64:extra",
    "T3.MICRO",
    "t3",
    "mac2.metal",
    "gpu:h100",
    "sandbox"
  ],
  controlId,
  bootTimeout: Duration.seconds(30),
  foreignResources: () =>
    Effect.gen(function* () {
      const server = moto
      if (server === null) return yield* Effect.die(new Error("moto is not running"))
      // A SkyREPL-shaped name without the managed tag, and the tag on a name SkyREPL never writes.
      const lookalike = formatInstanceName({ controlId, manifestId: newId(), instanceId: newId() })
      yield* runRaw(server.url, { Name: lookalike })
      yield* runRaw(server.url, { Name: "web-1", "skyrepl:managed": "true" })
      return [lookalike, "web-1"]
    })
})

afterAll(() => removeDir(dir))
