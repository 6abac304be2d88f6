import { describe, expect, layer } from "@effect/vitest"
import { DescribeInstancesCommand, EC2Client, RunInstancesCommand, TerminateInstancesCommand } from "@aws-sdk/client-ec2"
import { Context, Duration, Effect, Layer } from "effect"
import { randomBytes } from "node:crypto"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { gzipSync } from "node:zlib"
import { type BootHarness, decodeUserData, startBootHarness } from "../src/harness.ts"
import { motoCredentials, type MotoServer, startMoto } from "../src/moto.ts"
import { FAKE_MARKER, powerTargets } from "../src/sandbox.ts"

// The boot harness runs user-data in sandboxes. What matters most: a power-off inside a sandbox
// never reaches this machine (every spelling lands on the fake, which only reports), and it
// becomes what EC2 would do; moto ending an instance ends its sandbox.

// CI runs Node 20; the SDK's notice that future SDK versions will need Node 22 would otherwise
// be printed by every test file.
process.env["AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"] ??= "true"

const REGION = "us-east-1"

interface FixtureService {
  readonly moto: MotoServer
  readonly harness: BootHarness
  readonly ec2: EC2Client
}
class Fixture extends Context.Tag("test/HarnessFixture")<Fixture, FixtureService>() {}

const fixture = Layer.scoped(
  Fixture,
  Effect.gen(function* () {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "skyrepl-harness-"))),
      (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
    )
    const moto = yield* startMoto()
    const harness = yield* startBootHarness({ endpoint: moto.url, regions: [REGION], workDir: join(dir, "work"), pollInterval: Duration.millis(100) })
    const ec2 = yield* Effect.acquireRelease(
      Effect.sync(() => new EC2Client({ region: REGION, endpoint: moto.url, credentials: motoCredentials, maxAttempts: 1 })),
      (c) => Effect.sync(() => c.destroy())
    )
    return { moto, harness, ec2 }
  }).pipe(Effect.orDie)
)

/** Launches a moto instance with this user-data; returns its id. */
const launch = (userData: string | null, behaviour: "terminate" | "stop" = "terminate", gzip = false) =>
  Effect.gen(function* () {
    const { ec2 } = yield* Fixture
    const body = userData === null ? null : gzip ? gzipSync(userData) : Buffer.from(userData)
    const out = yield* Effect.promise(() =>
      ec2.send(
        new RunInstancesCommand({
          ImageId: "ami-0a11000000001000",
          InstanceType: "t3.micro",
          MinCount: 1,
          MaxCount: 1,
          InstanceInitiatedShutdownBehavior: behaviour,
          ...(body === null ? {} : { UserData: body.toString("base64") })
        })
      )
    )
    return out.Instances?.[0]?.InstanceId ?? ""
  })

const stateOf = (instanceId: string) =>
  Effect.gen(function* () {
    const { ec2 } = yield* Fixture
    const out = yield* Effect.promise(() => ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] })))
    return out.Reservations?.[0]?.Instances?.[0]?.State?.Name
  })

const awaitState = (instanceId: string, wanted: string) =>
  Effect.gen(function* () {
    const deadline = Date.now() + 15_000
    for (;;) {
      const state = yield* stateOf(instanceId)
      if (state === wanted) return
      if (Date.now() > deadline) return yield* Effect.die(new Error(`${instanceId} is ${state}, not ${wanted}`))
      yield* Effect.sleep(Duration.millis(100))
    }
  })

/** Host pids of live processes whose environment carries `marker`. */
const processesWith = (marker: string): ReadonlyArray<number> =>
  readdirSync("/proc").flatMap((entry) => {
    if (!/^[0-9]+$/.test(entry)) return []
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "latin1")
      if (/\) [ZX] /.test(stat)) return []
      return readFileSync(`/proc/${entry}/environ`).includes(marker) ? [Number(entry)] : []
    } catch {
      return []
    }
  })

/**
 * User-data that first proves every spelling of power-off is the fake (and stops there if not),
 * then asks for `request`. It also leaves a file in /opt, which must be the instance's own.
 */
const powerOffScript = (request: string, resultFile = "/opt/checks") => `#!/bin/sh
set -u
for p in ${powerTargets().join(" ")} /sbin/poweroff /usr/sbin/poweroff /sbin/shutdown /sbin/halt /sbin/reboot; do
  if [ -e "$p" ] && ! grep -q ${FAKE_MARKER} "$p"; then echo "REAL $p" >> ${resultFile}; exit 1; fi
done
for p in poweroff shutdown halt reboot systemctl telinit; do
  grep -q ${FAKE_MARKER} "$(command -v $p)" || { echo "REAL $p on PATH" >> ${resultFile}; exit 1; }
done
[ -z "$(ls -A /run/systemd 2>/dev/null)" ] || { echo "host systemd sockets visible" >> ${resultFile}; exit 1; }
echo "all fakes" >> ${resultFile}
systemctl status >/dev/null
shutdown -c
${request}
`

describe("the boot harness", () => {
  layer(fixture, { excludeTestServices: true, timeout: Duration.seconds(60) })((it) => {
    it.effect("every spelling of power-off lands on the fake and becomes a termination in moto", () =>
      Effect.gen(function* () {
        const { harness } = yield* Fixture
        const spellings = ["poweroff", "/usr/sbin/poweroff", "/sbin/shutdown -h now", "halt", "reboot", "systemctl poweroff", "/usr/bin/systemctl halt", "telinit 0"]
        const launched = yield* Effect.forEach(spellings, (request) => Effect.map(launch(powerOffScript(request)), (id) => ({ id, request })))
        for (const { id, request } of launched) {
          yield* awaitState(id, "terminated")
          const seen = yield* harness.awaitStatus(id, "ended", Duration.seconds(10))
          expect(seen.poweredOff).toBe("terminate")
          // Only the power-off: `systemctl status` and `shutdown -c` asked for nothing.
          expect(seen.powerRequests).toHaveLength(1)
          expect(seen.powerRequests[0]?.startsWith(request.split(" ")[0]?.split("/").at(-1) ?? "?")).toBe(true)
          expect(readFileSync(join(seen.dir, "opt", "checks"), "utf8")).toBe("all fakes\n")
        }
        // The instances' /opt was their own, never this machine's.
        expect(existsSync("/opt/checks")).toBe(false)
      })
    )

    it.effect("an instance launched to stop on shutdown is stopped, not terminated", () =>
      Effect.gen(function* () {
        const { harness } = yield* Fixture
        const id = yield* launch(powerOffScript("poweroff"), "stop")
        yield* awaitState(id, "stopped")
        expect((yield* harness.awaitStatus(id, "ended", Duration.seconds(10))).poweredOff).toBe("stop")
        const { ec2 } = yield* Fixture
        yield* Effect.promise(() => ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] })))
      })
    )

    it.effect("gzipped user-data is inflated, as cloud-init does", () =>
      Effect.gen(function* () {
        const { harness } = yield* Fixture
        const id = yield* launch(powerOffScript("poweroff"), "terminate", true)
        yield* awaitState(id, "terminated")
        expect((yield* harness.awaitStatus(id, "ended", Duration.seconds(10))).powerRequests).toEqual(["poweroff "])
        expect(decodeUserData(gzipSync("#!/bin/sh\n").toString("base64")).toString()).toBe("#!/bin/sh\n")
      })
    )

    it.effect("TerminateInstances in moto ends the sandbox and every process in it", () =>
      Effect.gen(function* () {
        const { harness, ec2 } = yield* Fixture
        const marker = `SKYREPL_HARNESS_TEST=${randomBytes(8).toString("hex")}`
        const id = yield* launch(`#!/bin/sh\nenv ${marker} sleep 600 &\nenv ${marker} sh -c 'sleep 600' &\n`)
        yield* harness.awaitStatus(id, "booted", Duration.seconds(10))
        const deadline = Date.now() + 10_000
        while (processesWith(marker).length < 2 && Date.now() < deadline) yield* Effect.sleep(Duration.millis(50))
        expect(processesWith(marker).length).toBeGreaterThanOrEqual(2)
        yield* Effect.promise(() => ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] })))
        yield* harness.awaitStatus(id, "ended", Duration.seconds(10))
        const gone = Date.now() + 5_000
        while (processesWith(marker).length > 0 && Date.now() < gone) yield* Effect.sleep(Duration.millis(50))
        expect(processesWith(marker)).toEqual([])
        expect(yield* stateOf(id)).toBe("terminated")
      })
    )

    it.effect("an instance without user-data is left alone", () =>
      Effect.gen(function* () {
        const { harness, ec2 } = yield* Fixture
        const id = yield* launch(null)
        const deadline = Date.now() + 10_000
        let seen = (yield* harness.instances).find((i) => i.instanceId === id)
        while (seen === undefined && Date.now() < deadline) {
          yield* Effect.sleep(Duration.millis(50))
          seen = (yield* harness.instances).find((i) => i.instanceId === id)
        }
        expect(seen?.status).toBe("no-user-data")
        expect(yield* stateOf(id)).toBe("running")
        yield* Effect.promise(() => ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] })))
      })
    )
  })
})
