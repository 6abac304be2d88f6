import { describe, expect, layer } from "@effect/vitest"
import { agentScriptPath, formatInstanceName, newControlId, newId, type ParsedSpec, type ProviderService, type ProviderSnapshots } from "@skyrepl/core"
import { DescribeImagesCommand, DescribeSnapshotsCommand } from "@aws-sdk/client-ec2"
import { Context, Duration, Effect, Layer } from "effect"
import { AwsProvider } from "../src/index.ts"
import { type MotoServer, motoInstances, optionsFor, rawClient, rawInstance, REGION, removeDir, startMoto, tempDir } from "./support.ts"

// Snapshots are AMIs made with CreateImage; deleting one deregisters the AMI and deletes its EBS
// snapshots.

interface FixtureService {
  readonly moto: MotoServer
  readonly provider: ProviderService
  readonly snapshots: ProviderSnapshots
}
class Fixture extends Context.Tag("test/SnapshotFixture")<Fixture, FixtureService>() {}

const fixture = Layer.scoped(
  Fixture,
  Effect.gen(function* () {
    const dir = yield* Effect.acquireRelease(Effect.sync(() => tempDir("snapshots")), (d) => Effect.sync(() => removeDir(d)))
    const moto = yield* startMoto().pipe(Effect.orDie)
    const provider = yield* AwsProvider.make(optionsFor(moto, dir))
    const snapshots = provider.snapshots
    if (snapshots === undefined) return yield* Effect.die(new Error("the aws provider has no snapshots"))
    return { moto, provider, snapshots }
  })
)

/** The EBS snapshots moto still has among `ids` (asking for a deleted one is an error: none). */
const ebsSnapshots = (moto: MotoServer, ids: ReadonlyArray<string>) =>
  Effect.promise(
    (): Promise<ReadonlyArray<string>> =>
      rawClient(moto.url)
        .send(new DescribeSnapshotsCommand({ SnapshotIds: [...ids] }))
        .then(
          (out) => (out.Snapshots ?? []).map((s) => s.SnapshotId ?? ""),
          () => []
        )
  )

describe("snapshots", () => {
  layer(fixture, { excludeTestServices: true, timeout: Duration.seconds(60) })((it) => {
    it.scoped("create, list and delete (idempotent), with the AMI's EBS snapshots", () =>
      Effect.gen(function* () {
        const { moto, provider, snapshots } = yield* Fixture
        expect(provider.capabilities.snapshots).toBe(true)
        const name = formatInstanceName({ controlId: newControlId(), manifestId: newId(), instanceId: newId() })
        const spec = yield* Effect.orDie(provider.parseSpec(undefined))
        const spawned = yield* Effect.acquireRelease(
          provider.spawn(name, spec, { agentUrl: "http://127.0.0.1:9", token: "t", heartbeatIntervalMs: 1000, deadmanTimeoutMs: 5000, agentScript: agentScriptPath }),
          (s) => Effect.orDie(provider.terminate({ name, providerRef: s.providerRef, region: s.region }))
        )
        const ref = { name, providerRef: spawned.providerRef, region: spawned.region }

        const snapshot = yield* snapshots.create(ref, "base image: v1!")
        expect(snapshot).toMatchObject({ provider: "aws", region: REGION, source: name, name: "base image- v1-" })
        expect(snapshot.id).toMatch(/^ami-/)
        expect(["pending", "available"]).toContain(snapshot.state)

        const listed = yield* snapshots.list()
        expect(listed.find((s) => s.id === snapshot.id)).toMatchObject({ source: name, region: REGION })

        const image = yield* Effect.promise(() => rawClient(moto.url).send(new DescribeImagesCommand({ ImageIds: [snapshot.id] })))
        const ebs = (image.Images?.[0]?.BlockDeviceMappings ?? []).flatMap((m) => (m.Ebs?.SnapshotId === undefined ? [] : [m.Ebs.SnapshotId]))
        expect(ebs.length).toBeGreaterThan(0)
        expect(yield* ebsSnapshots(moto, ebs)).toEqual(ebs)
        // Tagged as the image is, in CreateImage itself: SkyREPL's from their first moment.
        const tagsOf = (tags: ReadonlyArray<{ Key?: string | undefined; Value?: string | undefined }> | undefined) =>
          Object.fromEntries((tags ?? []).map((t) => [t.Key ?? "", t.Value ?? ""]))
        const imageTags = tagsOf(image.Images?.[0]?.Tags)
        expect(imageTags).toMatchObject({ "skyrepl:managed": "true", "skyrepl:source": name, Name: "base image- v1-", "skyrepl:creation": expect.any(String) })
        const described = yield* Effect.promise(() => rawClient(moto.url).send(new DescribeSnapshotsCommand({ SnapshotIds: ebs })))
        for (const s of described.Snapshots ?? []) expect(tagsOf(s.Tags)).toEqual(imageTags)

        yield* snapshots.delete(snapshot.id, REGION)
        expect((yield* snapshots.list()).some((s) => s.id === snapshot.id)).toBe(false)
        expect(yield* ebsSnapshots(moto, ebs)).toEqual([])
        yield* snapshots.delete(snapshot.id, REGION)
        yield* snapshots.delete(snapshot.id, null)
      })
    )

    it.scoped("a snapshot launches as a spec: its AMI on its architecture's type; an unknown AMI or a type of another architecture launches nothing", () =>
      Effect.gen(function* () {
        const { moto, provider, snapshots } = yield* Fixture
        const bootstrap = { agentUrl: "http://127.0.0.1:9", token: "t", heartbeatIntervalMs: 1000, deadmanTimeoutMs: 5000, agentScript: agentScriptPath }
        const newName = () => formatInstanceName({ controlId: newControlId(), manifestId: newId(), instanceId: newId() })
        const spawnScoped = (name: string, spec: ParsedSpec) =>
          Effect.acquireRelease(provider.spawn(name, spec, bootstrap), (s) =>
            Effect.orDie(provider.terminate({ name, providerRef: s.providerRef, region: s.region }))
          )
        const source = newName()
        const spawned = yield* spawnScoped(source, yield* Effect.orDie(provider.parseSpec(undefined)))
        const snapshot = yield* snapshots.create({ name: source, providerRef: spawned.providerRef, region: spawned.region }, "base")

        const fromSnapshot = newName()
        const launched = yield* spawnScoped(fromSnapshot, yield* Effect.orDie(provider.parseSpec(snapshot.id)))
        const instance = yield* rawInstance(moto.url, launched.providerRef)
        expect([instance?.ImageId, instance?.InstanceType]).toEqual([snapshot.id, "t3.micro"])

        const before = (yield* motoInstances(moto.url)).length
        const unknown = yield* Effect.flip(provider.spawn(newName(), yield* Effect.orDie(provider.parseSpec("ami-0123456789abcdef0")), bootstrap))
        expect([unknown.reason, unknown.message]).toEqual(["not-found", expect.stringContaining("the image ami-0123456789abcdef0 does not exist in")])
        const mismatch = yield* Effect.flip(provider.spawn(newName(), yield* Effect.orDie(provider.parseSpec(`t4g.nano:${snapshot.id}`)), bootstrap))
        expect([mismatch.reason, mismatch.message]).toEqual(["invalid-request", expect.stringContaining(`the image ${snapshot.id} is amd64 but t4g.nano is arm64`)])
        expect((yield* motoInstances(moto.url)).length).toBe(before)
        yield* snapshots.delete(snapshot.id, REGION)
      })
    )

    it.effect("an image SkyREPL did not make is never deleted", () =>
      Effect.gen(function* () {
        const { snapshots } = yield* Fixture
        const error = yield* Effect.flip(snapshots.delete("ami-0a11000000001000", REGION))
        expect(error.reason).toBe("invalid-request")
        expect(error.message).toContain("not a SkyREPL snapshot")
      })
    )

    it.effect("an id that is not an AMI id is refused, not reported deleted (AWS calls it malformed, not gone)", () =>
      Effect.gen(function* () {
        const { snapshots } = yield* Fixture
        const error = yield* Effect.flip(snapshots.delete("bogus", REGION))
        expect([error.reason, error.message]).toEqual(["invalid-request", '"bogus" is not an AMI id (ami- and 8 to 17 hex digits; repl snapshot list shows them)'])
        // A well-formed id of an image that is not there is already gone: success.
        yield* snapshots.delete("ami-0123456789abcdef0", REGION)
      })
    )

    it.effect("ids and names are checked before anything is asked: an id that is no AMI id, a blank name", () =>
      Effect.gen(function* () {
        const { snapshots } = yield* Fixture
        expect(snapshots.idProblem?.("ami-0123456789abcdef0")).toBeNull()
        expect(snapshots.idProblem?.("bogus")).toBe('"bogus" is not an AMI id (ami- and 8 to 17 hex digits; repl snapshot list shows them)')
        // Any other name is made to fit; a blank one would be "---".
        expect(snapshots.nameProblem?.("base image: v1!")).toBeNull()
        for (const blank of ["", "   "]) expect(snapshots.nameProblem?.(blank)).toMatch(/^a snapshot name cannot be blank/)
        // And the provider refuses it itself, for a caller that goes to it directly.
        const error = yield* Effect.flip(snapshots.create({ name: formatInstanceName({ controlId: newControlId(), manifestId: newId(), instanceId: newId() }), providerRef: null, region: REGION }, ""))
        expect([error.reason, error.message]).toEqual(["invalid-request", expect.stringMatching(/^a snapshot name cannot be blank/)])
      })
    )

    it.effect("a region that is not a region name is refused before AWS is asked anything", () =>
      Effect.gen(function* () {
        const { snapshots } = yield* Fixture
        // Without the check, moto answers for any region: the delete would find nothing there
        // and succeed.
        const error = yield* Effect.flip(snapshots.delete("ami-0a11000000001000", "mars-1"))
        expect([error.reason, error.message]).toEqual(["invalid-request", expect.stringContaining('"mars-1" is not an AWS region name')])
      })
    )

    it.effect("snapshotting an instance that is gone fails as not-found", () =>
      Effect.gen(function* () {
        const { snapshots } = yield* Fixture
        const name = formatInstanceName({ controlId: newControlId(), manifestId: newId(), instanceId: newId() })
        const error = yield* Effect.flip(snapshots.create({ name, providerRef: null, region: REGION }, "x"))
        expect(error.reason).toBe("not-found")
      })
    )
  })
})
