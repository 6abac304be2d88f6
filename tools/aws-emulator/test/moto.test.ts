import { describe, expect, layer } from "@effect/vitest"
import { CreateImageCommand, DescribeImagesCommand, DescribeSnapshotsCommand, EC2Client, RunInstancesCommand } from "@aws-sdk/client-ec2"
import { Context, Duration, Effect, Layer } from "effect"
import { motoCredentials, startMoto } from "../src/moto.ts"

// What moto is taught beyond its own (src/moto-patches): each case is what EC2 documents.

process.env["AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"] ??= "true"

const REGION = "us-east-1"

class Fixture extends Context.Tag("test/MotoFixture")<Fixture, { readonly ec2: EC2Client }>() {}

const fixture = Layer.scoped(
  Fixture,
  Effect.gen(function* () {
    const moto = yield* startMoto()
    const ec2 = yield* Effect.acquireRelease(
      Effect.sync(() => new EC2Client({ region: REGION, endpoint: moto.url, credentials: motoCredentials, maxAttempts: 1 })),
      (c) => Effect.sync(() => c.destroy())
    )
    return { ec2 }
  }).pipe(Effect.orDie)
)

describe("moto as the emulator starts it", () => {
  layer(fixture, { excludeTestServices: true, timeout: Duration.seconds(60) })((it) => {
    it.effect("CreateImage tags its EBS snapshots with the snapshot specification's tags, and the image with the image's", () =>
      Effect.gen(function* () {
        const { ec2 } = yield* Fixture
        const run = yield* Effect.promise(() =>
          ec2.send(new RunInstancesCommand({ ImageId: "ami-0a11000000001000", InstanceType: "t3.micro", MinCount: 1, MaxCount: 1 }))
        )
        const created = yield* Effect.promise(() =>
          ec2.send(
            new CreateImageCommand({
              InstanceId: run.Instances?.[0]?.InstanceId ?? "",
              Name: "tagged snapshots",
              TagSpecifications: [
                { ResourceType: "image", Tags: [{ Key: "kind", Value: "image" }] },
                { ResourceType: "snapshot", Tags: [{ Key: "kind", Value: "snapshot" }, { Key: "owner", Value: "skyrepl" }] }
              ]
            })
          )
        )
        const image = (yield* Effect.promise(() => ec2.send(new DescribeImagesCommand({ ImageIds: [created.ImageId ?? ""] })))).Images?.[0]
        expect(image?.Tags).toEqual([{ Key: "kind", Value: "image" }])
        const ids = (image?.BlockDeviceMappings ?? []).flatMap((m) => (m.Ebs?.SnapshotId === undefined ? [] : [m.Ebs.SnapshotId]))
        expect(ids.length).toBeGreaterThan(0)
        const found = yield* Effect.promise(() =>
          ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ["self"], Filters: [{ Name: "tag:owner", Values: ["skyrepl"] }] }))
        )
        expect((found.Snapshots ?? []).map((s) => s.SnapshotId).sort()).toEqual([...ids].sort())
        for (const snapshot of found.Snapshots ?? []) {
          expect([...(snapshot.Tags ?? [])].sort((a, b) => (a.Key ?? "").localeCompare(b.Key ?? ""))).toEqual([
            { Key: "kind", Value: "snapshot" },
            { Key: "owner", Value: "skyrepl" }
          ])
        }
      })
    )
  })
})
