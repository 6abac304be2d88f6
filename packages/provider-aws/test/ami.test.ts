import { describe, expect, layer } from "@effect/vitest"
import { agentScriptPath, formatInstanceName, newControlId, newId, type ProviderService } from "@skyrepl/core"
import { DescribeImagesCommand, DescribeInstancesCommand } from "@aws-sdk/client-ec2"
import { Context, Duration, Effect, Layer } from "effect"
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { AwsProvider, type AwsProviderOptions } from "../src/index.ts"
import { type FaultProxy, startFaultProxy } from "./fault-proxy.ts"
import { type MotoServer, optionsFor, rawClient, REGION, removeDir, startMoto, tempDir } from "./support.ts"

// The image is the newest Ubuntu server image Canonical (099720109477) published for the
// version and architecture; moto serves Canonical-owned images (and decoys) from
// tools/aws-emulator/src/canonical-amis.json.

interface FixtureService {
  readonly moto: MotoServer
  readonly proxy: FaultProxy
  readonly dir: string
}
class Fixture extends Context.Tag("test/AmiFixture")<Fixture, FixtureService>() {}

const fixture = Layer.scoped(
  Fixture,
  Effect.gen(function* () {
    const dir = yield* Effect.acquireRelease(Effect.sync(() => tempDir("ami")), (d) => Effect.sync(() => removeDir(d)))
    const moto = yield* startMoto().pipe(Effect.orDie)
    const proxy = yield* startFaultProxy(moto.url)
    return { moto, proxy, dir }
  })
)

const controlId = newControlId()

const provider = (overrides: Partial<AwsProviderOptions> = {}) =>
  Effect.gen(function* () {
    const { moto, proxy, dir } = yield* Fixture
    return yield* AwsProvider.make({ ...optionsFor(moto, dir, overrides), endpoint: proxy.url })
  })

/** Spawns with `spec`, returns the image the instance got, and terminates it. */
const imageOf = (p: ProviderService, spec: string, region: string = REGION) =>
  Effect.gen(function* () {
    const { moto } = yield* Fixture
    const parsed = yield* Effect.orDie(p.parseSpec(spec, { region }))
    const name = formatInstanceName({ controlId, manifestId: newId(), instanceId: newId() })
    const spawned = yield* p.spawn(name, parsed, {
      agentUrl: "http://127.0.0.1:9",
      token: "token",
      heartbeatIntervalMs: 1000,
      deadmanTimeoutMs: 5000,
      agentScript: agentScriptPath
    })
    const described = yield* Effect.promise(() => rawClient(moto.url, region).send(new DescribeInstancesCommand({ InstanceIds: [spawned.providerRef] })))
    yield* p.terminate({ name, providerRef: spawned.providerRef, region })
    return described.Reservations?.[0]?.Instances?.[0]?.ImageId ?? ""
  })

/** The id of the image moto has under `name`. */
const imageNamed = (name: string) =>
  Effect.gen(function* () {
    const { moto } = yield* Fixture
    const out = yield* Effect.promise(() =>
      rawClient(moto.url).send(new DescribeImagesCommand({ Owners: ["099720109477"], Filters: [{ Name: "name", Values: [name] }] }))
    )
    const id = out.Images?.[0]?.ImageId
    if (id === undefined) return yield* Effect.die(new Error(`moto has no image ${name}`))
    return id
  })

/** The cache file, deleted: the next look-up in a new provider asks AWS. */
const emptyCache = Effect.map(Fixture, ({ dir }) => {
  const cacheFile = join(dir, "cache", "aws-amis.json")
  rmSync(cacheFile, { force: true })
  return cacheFile
})

const NOBLE_AMD64_NEWEST = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250115"

describe("AMI resolution", () => {
  layer(fixture, { excludeTestServices: true, timeout: Duration.seconds(60) })((it) => {
    it.effect("picks Canonical's newest server image for each version and architecture, never a decoy", () =>
      Effect.gen(function* () {
        const p = yield* provider({ amiCacheTtl: Duration.millis(0) })
        const cases: ReadonlyArray<readonly [string, string]> = [
          ["", "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250115"],
          ["t4g.nano", "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-20250115"],
          ["ubuntu:jammy:arm64", "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-arm64-server-20250115"],
          ["ubuntu:focal:amd64", "ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-20250115"]
        ]
        for (const [spec, expected] of cases) {
          expect(yield* imageOf(p, spec)).toBe(yield* imageNamed(expected))
        }
      })
    )

    it.effect("caches the look-up for a day under the cache directory; deleting the cache forces a fresh one", () =>
      Effect.gen(function* () {
        const { proxy } = yield* Fixture
        const cacheFile = yield* emptyCache
        const newest = yield* imageNamed(NOBLE_AMD64_NEWEST)
        const older = yield* imageNamed("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20240301")

        proxy.setRules([])
        expect(yield* imageOf(yield* provider(), "ubuntu:noble:amd64")).toBe(newest)
        expect(proxy.calls("DescribeImages")).toBe(1)
        expect(existsSync(cacheFile)).toBe(true)

        // A new process (a new provider) reads the cache: no look-up at all.
        proxy.setRules([])
        expect(yield* imageOf(yield* provider(), "ubuntu:noble:amd64")).toBe(newest)
        expect(proxy.calls("DescribeImages")).toBe(0)

        // Proof that the answer comes from the file: an edited entry is used as it is.
        writeFileSync(cacheFile, readFileSync(cacheFile, "utf8").replace(newest, older))
        expect(yield* imageOf(yield* provider(), "ubuntu:noble:amd64")).toBe(older)

        // An entry older than the time-to-live is looked up again.
        proxy.setRules([])
        expect(yield* imageOf(yield* provider({ amiCacheTtl: Duration.millis(1) }), "ubuntu:noble:amd64")).toBe(newest)
        expect(proxy.calls("DescribeImages")).toBe(1)

        rmSync(cacheFile)
        proxy.setRules([])
        expect(yield* imageOf(yield* provider(), "ubuntu:noble:amd64")).toBe(newest)
        expect(proxy.calls("DescribeImages")).toBe(1)
      })
    )

    it.effect("a provider remembers what it read or looked up: its later launches touch neither the file nor AWS", () =>
      Effect.gen(function* () {
        const { proxy } = yield* Fixture
        const cacheFile = yield* emptyCache
        const newest = yield* imageNamed(NOBLE_AMD64_NEWEST)
        const p = yield* provider()
        proxy.setRules([])
        expect(yield* imageOf(p, "ubuntu:noble:amd64")).toBe(newest)
        expect(proxy.calls("DescribeImages")).toBe(1)
        // The file gone, the same provider still knows; a new one looks up again.
        rmSync(cacheFile)
        proxy.setRules([])
        expect(yield* imageOf(p, "ubuntu:noble:amd64")).toBe(newest)
        expect(proxy.calls("DescribeImages")).toBe(0)
        expect(yield* imageOf(yield* provider(), "ubuntu:noble:amd64")).toBe(newest)
        expect(proxy.calls("DescribeImages")).toBe(1)
        // Its memory keeps the time-to-live: an entry older than that is looked up again.
        const short = yield* provider({ amiCacheTtl: Duration.millis(50) })
        yield* imageOf(short, "ubuntu:noble:amd64")
        yield* Effect.sleep(Duration.millis(80))
        proxy.setRules([])
        yield* imageOf(short, "ubuntu:noble:amd64")
        expect(proxy.calls("DescribeImages")).toBe(1)
      })
    )

    it.effect("the cache is keyed by endpoint and region", () =>
      Effect.gen(function* () {
        const { dir } = yield* Fixture
        yield* imageOf(yield* provider(), "ubuntu:noble:arm64", "eu-west-1")
        const cache = readFileSync(join(dir, "cache", "aws-amis.json"), "utf8")
        expect(cache).toContain(" eu-west-1 ubuntu:noble:arm64")
        expect(cache).toContain("http://127.0.0.1:")
      })
    )

    it.effect("where Canonical published nothing, the launch fails saying so, and nothing starts", () =>
      Effect.gen(function* () {
        const { moto } = yield* Fixture
        // China is its own partition, where Canonical publishes from another account.
        const p = yield* provider({ amiCacheTtl: Duration.millis(0) })
        const error = yield* Effect.flip(imageOf(p, "ubuntu:noble:amd64", "cn-north-1"))
        expect(error.reason).toBe("not-found")
        expect(error.message).toContain("owner 837727238323")
        const out = yield* Effect.promise(() => rawClient(moto.url, "cn-north-1").send(new DescribeInstancesCommand({})))
        expect(out.Reservations ?? []).toEqual([])
      })
    )
  })
})
