import {
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  EC2Client,
  type Instance as Ec2Instance,
  RunInstancesCommand,
  TerminateInstancesCommand
} from "@aws-sdk/client-ec2"
import { Duration, Effect, Schedule } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { motoCredentials, type MotoServer } from "../../../tools/aws-emulator/src/moto.ts"
import type { AwsProviderOptions } from "../src/index.ts"

export { motoCredentials, startMoto, type MotoServer } from "../../../tools/aws-emulator/src/moto.ts"

// CI runs Node 20; the SDK's notice that future SDK versions will need Node 22 would otherwise
// be printed by every test file.
process.env["AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"] ??= "true"
export { startBootHarness } from "../../../tools/aws-emulator/src/harness.ts"

export const REGION = "us-east-1"

export const tempDir = (prefix: string): string => mkdtempSync(join(tmpdir(), `skyrepl-aws-${prefix}-`))

export const removeDir = (dir: string): void => rmSync(dir, { recursive: true, force: true })

/** Retries quick enough for tests; the kinds of error retried are the provider's own. */
export const fastRetry: Schedule.Schedule<unknown, unknown> = Schedule.exponential(Duration.millis(20), 2).pipe(
  Schedule.intersect(Schedule.recurs(4))
)

/** Provider options against a moto server: short timings, a private home and cache. */
export const optionsFor = (
  moto: MotoServer,
  dir: string,
  overrides: Partial<AwsProviderOptions> = {}
): AwsProviderOptions => ({
  endpoint: moto.url,
  region: REGION,
  credentials: motoCredentials,
  home: join(dir, "home"),
  cacheDir: join(dir, "cache"),
  capacityBackoff: Duration.millis(50),
  callRetry: fastRetry,
  requestTimeout: Duration.seconds(10),
  visibilityTimeout: Duration.seconds(10),
  ...overrides
})

/** Talks to moto directly (no proxy, no provider), to check what really exists there. */
export const rawClient = (endpoint: string, region: string = REGION): EC2Client =>
  new EC2Client({ region, endpoint, credentials: motoCredentials, maxAttempts: 1 })

export interface MotoInstance {
  readonly id: string
  readonly state: string
  readonly name: string | null
  readonly managed: boolean
}

export const motoInstances = (endpoint: string, region: string = REGION): Effect.Effect<ReadonlyArray<MotoInstance>> =>
  Effect.promise(async () => {
    const client = rawClient(endpoint, region)
    const out: Array<MotoInstance> = []
    let token: string | undefined
    do {
      const page = await client.send(new DescribeInstancesCommand({ MaxResults: 1000, ...(token === undefined ? {} : { NextToken: token }) }))
      for (const reservation of page.Reservations ?? []) {
        for (const i of reservation.Instances ?? []) {
          out.push({
            id: i.InstanceId ?? "",
            state: i.State?.Name ?? "",
            name: i.Tags?.find((t) => t.Key === "Name")?.Value ?? null,
            managed: i.Tags?.some((t) => t.Key === "skyrepl:managed" && t.Value === "true") ?? false
          })
        }
      }
      token = page.NextToken === undefined || page.NextToken === "" ? undefined : page.NextToken
    } while (token !== undefined)
    client.destroy()
    return out
  })

/** Instances moto still has running (or starting, or stopped: anything that is not ended). */
export const liveInMoto = (endpoint: string, region: string = REGION) =>
  Effect.map(motoInstances(endpoint, region), (all) => all.filter((i) => i.state !== "terminated" && i.state !== "shutting-down"))

export const shutdownBehaviour = (endpoint: string, instanceId: string, region: string = REGION): Effect.Effect<string | undefined> =>
  Effect.promise(async () => {
    const client = rawClient(endpoint, region)
    const out = await client.send(new DescribeInstanceAttributeCommand({ InstanceId: instanceId, Attribute: "instanceInitiatedShutdownBehavior" }))
    client.destroy()
    return out.InstanceInitiatedShutdownBehavior?.Value
  })

/** One instance as moto describes it (image, type, subnet, tags …), asked past the provider. */
export const rawInstance = (endpoint: string, instanceId: string, region: string = REGION): Effect.Effect<Ec2Instance | undefined> =>
  Effect.promise(async () => {
    const client = rawClient(endpoint, region)
    const out = await client.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))
    client.destroy()
    return out.Reservations?.[0]?.Instances?.[0]
  })

export const instanceTags = (endpoint: string, instanceId: string, region: string = REGION): Effect.Effect<Record<string, string>> =>
  Effect.map(rawInstance(endpoint, instanceId, region), (instance) =>
    Object.fromEntries((instance?.Tags ?? []).map((t) => [t.Key ?? "", t.Value ?? ""]))
  )

/** Starts an instance in moto behind the provider's back, terminated when the scope closes. */
export const runRaw = (endpoint: string, tags: Record<string, string>, region: string = REGION) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const client = rawClient(endpoint, region)
      const out = await client.send(
        new RunInstancesCommand({
          ImageId: "ami-0a11000000001000",
          InstanceType: "t3.micro",
          MinCount: 1,
          MaxCount: 1,
          TagSpecifications: [{ ResourceType: "instance", Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) }]
        })
      )
      client.destroy()
      return out.Instances?.[0]?.InstanceId ?? ""
    }),
    (id) =>
      Effect.promise(async () => {
        const client = rawClient(endpoint, region)
        await client.send(new TerminateInstancesCommand({ InstanceIds: [id] }))
        client.destroy()
      })
  )
