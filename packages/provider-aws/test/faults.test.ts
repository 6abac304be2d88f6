import { describe, expect, layer } from "@effect/vitest"
import { agentScriptPath, formatInstanceName, newControlId, newId, type ProviderError, type ProviderErrorReason, type ProviderService } from "@skyrepl/core"
import { CreateImageCommand, DescribeImagesCommand, DescribeInstancesCommand, DescribeSecurityGroupsCommand, DescribeSnapshotsCommand, DescribeSubnetsCommand } from "@aws-sdk/client-ec2"
import { Cause, Context, Duration, Effect, Either, Exit, Fiber, Layer, Logger, Option, Schedule } from "effect"
import { execa } from "execa"
import { readdirSync, readFileSync, renameSync, statSync } from "node:fs"
import { join } from "node:path"
import { AwsProvider, awsErrorCode, type AwsProviderOptions } from "../src/index.ts"
import { type FaultProxy, type FaultRule, startFaultProxy } from "./fault-proxy.ts"
import { liveInMoto, motoCredentials, motoInstances, type MotoServer, optionsFor, rawClient, rawInstance, REGION, removeDir, runRaw, startMoto, tempDir } from "./support.ts"

// A proxy between the SDK and moto breaks chosen calls. Whatever it does, a launch succeeds or
// fails with the tagged error its cause deserves, and no instance is left running in moto.

interface FixtureService {
  readonly moto: MotoServer
  readonly proxy: FaultProxy
  readonly dir: string
}
class Fixture extends Context.Tag("test/Fixture")<Fixture, FixtureService>() {}

const fixture = Layer.scoped(
  Fixture,
  Effect.gen(function* () {
    const dir = yield* Effect.acquireRelease(Effect.sync(() => tempDir("faults")), (d) => Effect.sync(() => removeDir(d)))
    const moto = yield* startMoto().pipe(Effect.orDie)
    const proxy = yield* startFaultProxy(moto.url)
    return { moto, proxy, dir }
  })
)

const controlId = newControlId()
const newName = () => formatInstanceName({ controlId, manifestId: newId(), instanceId: newId() })

let shared: ProviderService | null = null

/**
 * A provider that talks to moto through the proxy. Without options, one shared provider, whose
 * region start-up is done once; with options (or `fresh`), a new one that starts from scratch.
 */
const providerVia = (overrides?: Partial<AwsProviderOptions>, fresh = false) =>
  Effect.gen(function* () {
    const { moto, proxy, dir } = yield* Fixture
    if (overrides === undefined && !fresh && shared !== null) return shared
    const made = yield* AwsProvider.make({ ...optionsFor(moto, dir, overrides ?? {}), endpoint: proxy.url })
    if (overrides === undefined && !fresh) shared = made
    return made
  })

/** A provider through the proxy, its snapshots, and an instance named for the test to take them of. */
const snapshotSubject = (overrides?: Partial<AwsProviderOptions>) =>
  Effect.gen(function* () {
    const provider = yield* providerVia(overrides)
    const snapshots = provider.snapshots
    if (snapshots === undefined) return yield* Effect.die(new Error("the aws provider has no snapshots"))
    const name = newName()
    const spawned = yield* spawnNamed(provider, name)
    return { provider, snapshots, name, spawned }
  })

const spawnNamed = (provider: ProviderService, name: string) =>
  Effect.gen(function* () {
    const spec = yield* Effect.orDie(provider.parseSpec("t3.micro"))
    return yield* provider.spawn(name, spec, {
      // Nothing boots in this file (no harness): the agent only has to be shipped.
      agentUrl: "http://127.0.0.1:9",
      token: "0123456789abcdef",
      heartbeatIntervalMs: 1000,
      deadmanTimeoutMs: 5000,
      agentScript: agentScriptPath
    })
  })

/** Spawns `name` and returns the ref the engine would describe and terminate it by. */
const spawnRef = (provider: ProviderService, name: string) =>
  Effect.map(spawnNamed(provider, name), (spawned) => ({ name, providerRef: spawned.providerRef, region: REGION }))

/**
 * Options for a provider that talks to moto straight, in a region of its own: terminateSync
 * blocks this process, and with it the in-process proxy. (The region's key pair is then this
 * endpoint's alone; the proxy's providers keep theirs.)
 */
const DIRECT_REGION = "eu-central-1"
const direct = (moto: MotoServer, dir: string) => optionsFor(moto, dir, { region: DIRECT_REGION })

/** How many instances moto has ever had with this name, and how many are still live. */
const countIn = (moto: MotoServer, name: string, region: string = REGION) =>
  Effect.gen(function* () {
    const all = (yield* motoInstances(moto.url, region)).filter((i) => i.name === name)
    const live = (yield* liveInMoto(moto.url, region)).filter((i) => i.name === name)
    return { created: all.length, live: live.length }
  })

/** Ends whatever the scenario left, through the provider with the proxy out of the way. */
const cleanUp = (provider: ProviderService, name: string) =>
  Effect.gen(function* () {
    const { proxy, moto } = yield* Fixture
    proxy.setRules([])
    yield* provider.terminate({ name, providerRef: null, region: REGION })
    expect((yield* countIn(moto, name)).live).toBe(0)
  })

interface Scenario {
  readonly title: string
  readonly rules: ReadonlyArray<FaultRule>
  /** `launched`, or the reason the launch must fail with. */
  readonly outcome: "launched" | ProviderErrorReason
  readonly code?: string
  /** RunInstances calls that reached the proxy. */
  readonly runInstancesCalls: number
  readonly message?: RegExp
  readonly options?: Partial<AwsProviderOptions>
}

const runInstances = (calls: ReadonlyArray<number> | "all", fault: FaultRule["fault"]): FaultRule => ({ action: "RunInstances", calls, fault })

const scenarios: ReadonlyArray<Scenario> = [
  {
    title: "capacity twice, then room: retried after the provider's own back-off",
    rules: [runInstances([1, 2], { kind: "error", status: 500, code: "InsufficientInstanceCapacity" })],
    outcome: "launched",
    runInstancesCalls: 3
  },
  {
    title: "no capacity at all: fails as capacity (retryable) once the back-off schedule is spent",
    rules: [runInstances("all", { kind: "error", status: 500, code: "InsufficientInstanceCapacity" })],
    outcome: "capacity",
    code: "InsufficientInstanceCapacity",
    runInstancesCalls: 3,
    message: /no capacity for t3\.micro/
  },
  {
    title: "a configured capacity schedule replaces the default",
    rules: [runInstances("all", { kind: "error", status: 500, code: "InsufficientInstanceCapacity" })],
    outcome: "capacity",
    code: "InsufficientInstanceCapacity",
    runInstancesCalls: 5,
    options: { capacityRetry: Schedule.spaced(Duration.millis(10)).pipe(Schedule.intersect(Schedule.recurs(4))) }
  },
  {
    title: "RequestLimitExceeded twice: retried with jitter",
    rules: [runInstances([1, 2], { kind: "error", status: 503, code: "RequestLimitExceeded" })],
    outcome: "launched",
    runInstancesCalls: 3
  },
  {
    title: "throttled all along: fails as throttled",
    rules: [runInstances("all", { kind: "error", status: 503, code: "RequestLimitExceeded" })],
    outcome: "throttled",
    code: "RequestLimitExceeded",
    runInstancesCalls: 5
  },
  {
    title: "a 500 refused before launching: retried",
    rules: [runInstances([1], { kind: "error", status: 500, code: "InternalError" })],
    outcome: "launched",
    runInstancesCalls: 2
  },
  {
    title: "a 500 after moto launched: the look-up finds the instance, no second RunInstances",
    rules: [runInstances([1], { kind: "error-after", status: 500, code: "InternalError" })],
    outcome: "launched",
    runInstancesCalls: 1
  },
  {
    title: "the answer is late past the request time-out: the look-up finds the instance",
    rules: [runInstances([1], { kind: "delay", ms: 2_500 })],
    outcome: "launched",
    runInstancesCalls: 1,
    options: { requestTimeout: Duration.millis(1_200) }
  },
  {
    title: "UnauthorizedOperation: permanent, naming the IAM action",
    rules: [runInstances("all", { kind: "error", status: 403, code: "UnauthorizedOperation" })],
    outcome: "auth",
    code: "UnauthorizedOperation",
    runInstancesCalls: 1,
    message: /AWS refused ec2:RunInstances for arn:aws:sts::123456789012:user\/moto .*allow ec2:RunInstances and ec2:CreateTags/
  },
  {
    title: "AuthFailure: permanent",
    rules: [runInstances("all", { kind: "error", status: 401, code: "AuthFailure" })],
    outcome: "auth",
    code: "AuthFailure",
    runInstancesCalls: 1
  },
  {
    title: "VcpuLimitExceeded: permanent, saying how to raise the quota",
    rules: [runInstances("all", { kind: "error", status: 400, code: "VcpuLimitExceeded" })],
    outcome: "quota",
    code: "VcpuLimitExceeded",
    runInstancesCalls: 1,
    message: /Service Quotas.*request-service-quota-increase.*L-1216C47A/
  },
  {
    title: "a bad parameter: permanent",
    rules: [runInstances("all", { kind: "error", status: 400, code: "InvalidParameterValue" })],
    outcome: "invalid-request",
    code: "InvalidParameterValue",
    runInstancesCalls: 1
  }
]

/** The EBS snapshots behind an image, as moto has them. */
/** What moto answers to `ask`, asked past the proxy with a client of its own. */
const askMoto = <A>(moto: MotoServer, ask: (client: ReturnType<typeof rawClient>) => Promise<A>) =>
  Effect.promise(async (): Promise<A> => {
    const client = rawClient(moto.url)
    try {
      return await ask(client)
    } finally {
      client.destroy()
    }
  })

const ebsOf = (moto: MotoServer, imageId: string) =>
  askMoto(moto, async (client): Promise<ReadonlyArray<string>> => {
    const out = await client.send(new DescribeImagesCommand({ ImageIds: [imageId] }))
    return (out.Images?.[0]?.BlockDeviceMappings ?? []).flatMap((m) => (m.Ebs?.SnapshotId === undefined ? [] : [m.Ebs.SnapshotId]))
  })

/** Which of `ids` moto still has (asking for one it does not have is an error: none). */
const snapshotsIn = (moto: MotoServer, ids: ReadonlyArray<string>) =>
  askMoto(moto, async (client): Promise<ReadonlyArray<string>> => {
    const out = await client.send(new DescribeSnapshotsCommand({ SnapshotIds: [...ids] })).catch(() => ({ Snapshots: [] }))
    return (out.Snapshots ?? []).map((s) => s.SnapshotId ?? "")
  })

const imagesIn = (moto: MotoServer, ids: ReadonlyArray<string>) =>
  askMoto(moto, async (client): Promise<ReadonlyArray<string>> => {
    const out = await client.send(new DescribeImagesCommand({ ImageIds: [...ids] })).catch(() => ({ Images: [] }))
    return (out.Images ?? []).map((i) => i.ImageId ?? "")
  })

const imagesNamed = (moto: MotoServer, name: string) =>
  askMoto(moto, async (client): Promise<ReadonlyArray<string>> => {
    const out = await client.send(new DescribeImagesCommand({ Owners: ["self"], Filters: [{ Name: "name", Values: [name] }] }))
    return (out.Images ?? []).map((i) => i.ImageId ?? "")
  })

interface CreateImageLoss {
  readonly title: string
  readonly rules: ReadonlyArray<FaultRule>
  /** `made`: the snapshot is returned; else the failure it must be. */
  readonly outcome: "made" | { readonly reason: ProviderErrorReason; readonly message: RegExp }
  readonly options?: Partial<AwsProviderOptions>
  /** A failure after which the image exists all the same (EC2 made it; only finding it failed). */
  readonly leavesImage?: boolean
  /** DescribeImages calls the look-up makes, where the scenario counts them. */
  readonly describeImagesCalls?: number
}

const createImage = (fault: FaultRule["fault"]): FaultRule => ({ action: "CreateImage", calls: [1], fault })

const createImageLosses: ReadonlyArray<CreateImageLoss> = [
  {
    title: "a 500 after EC2 made the image: found by its creation tag, and returned",
    rules: [createImage({ kind: "error-after", status: 500, code: "InternalError" })],
    outcome: "made"
  },
  {
    title: "a 200 cut short after EC2 made the image: found and returned",
    rules: [createImage({ kind: "garble-after" })],
    outcome: "made"
  },
  {
    title: "an answer later than the request time-out: found and returned",
    rules: [createImage({ kind: "delay", ms: 2_500 })],
    outcome: "made",
    options: { requestTimeout: Duration.millis(1_200) }
  },
  {
    title: "an image EC2 shows only a moment later: looked for again until it shows",
    rules: [
      createImage({ kind: "error-after", status: 500, code: "InternalError" }),
      { action: "DescribeImages", calls: [1, 2], fault: { kind: "hide" } }
    ],
    outcome: "made",
    describeImagesCalls: 3
  },
  {
    title: "a connection reset before EC2 saw the call: nothing shows within visibilityTimeout, and it fails saying so",
    rules: [createImage({ kind: "reset" })],
    outcome: { reason: "transient", message: /^CreateImage in us-east-1 failed \(.+\): .+\. EC2 may have made the image before its answer was lost, but none of this snapshot showed in us-east-1 within 1s 500ms: it was not made; try again/ },
    options: { visibilityTimeout: Duration.millis(1_500) }
  },
  {
    title: "a 500 after EC2 made the image, and the look-up refused: it fails saying the image may exist",
    rules: [
      createImage({ kind: "error-after", status: 500, code: "InternalError" }),
      { action: "DescribeImages", calls: "all", fault: { kind: "error", status: 403, code: "UnauthorizedOperation" } }
    ],
    outcome: { reason: "auth", message: /EC2 may have made the image before its answer was lost, and looking for it failed too \(AWS refused ec2:DescribeImages.*\): repl snapshot list shows it if it exists\.$/ },
    leavesImage: true
  }
]

describe("aws provider on moto: start-up, and injected faults", () => {
  layer(fixture, { excludeTestServices: true, timeout: Duration.seconds(60) })((it) => {
    for (const scenario of scenarios) {
      it.effect(scenario.title, () =>
        Effect.gen(function* () {
          const { moto, proxy } = yield* Fixture
          const provider = yield* providerVia(scenario.options)
          const name = newName()
          proxy.setRules(scenario.rules)
          const exit = yield* Effect.exit(spawnNamed(provider, name))
          const runs = proxy.calls("RunInstances")
          proxy.setRules([])
          const count = yield* countIn(moto, name)
          if (scenario.outcome === "launched") {
            expect(Exit.isSuccess(exit)).toBe(true)
            expect(count).toEqual({ created: 1, live: 1 })
            if (Exit.isSuccess(exit)) expect(yield* provider.describe({ name, providerRef: exit.value.providerRef, region: REGION })).toBe("running")
          } else {
            const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
            if (Option.isNone(failure) || failure.value._tag !== "ProviderError") return expect.unreachable(`expected a ProviderError, got ${String(exit)}`)
            const error: ProviderError = failure.value
            expect(error.reason).toBe(scenario.outcome)
            expect(error.retryable).toBe(["capacity", "throttled", "transient"].includes(scenario.outcome))
            expect(awsErrorCode(error)).toBe(scenario.code)
            if (scenario.message !== undefined) expect(error.message).toMatch(scenario.message)
            expect(count.live).toBe(0)
          }
          expect(runs).toBe(scenario.runInstancesCalls)
          yield* cleanUp(provider, name)
        })
      )
    }

    it.effect("a fresh instance EC2 does not show yet is pending, never gone, and is not given up on", () =>
      Effect.gen(function* () {
        const { moto, proxy } = yield* Fixture
        const provider = yield* providerVia({ visibilityTimeout: Duration.seconds(20) })
        const name = newName()
        proxy.setRules([
          { action: "DescribeInstances", calls: "all", fault: { kind: "hide" } },
          { action: "TerminateInstances", calls: "all", fault: { kind: "hide" } }
        ])
        const spawned = yield* spawnNamed(provider, name).pipe(Effect.timeout(Duration.seconds(20)))
        const ref = { name, providerRef: spawned.providerRef, region: REGION }
        expect(yield* provider.describe(ref)).toBe("pending")
        expect(yield* provider.describe({ ...ref, providerRef: null })).toBe("pending")
        // Terminating what cannot be seen yet must not report success: it would leak.
        const early = yield* Effect.flip(provider.terminate(ref))
        expect(early.reason).toBe("transient")
        const byName = yield* Effect.flip(provider.terminate({ ...ref, providerRef: null, region: null }))
        expect(byName.reason).toBe("transient")
        // Another process (a reaper taking over from a dead owner) knows only the name: for a
        // name this young, not seeing it is not taking it for gone either.
        const other = yield* providerVia({ visibilityTimeout: Duration.seconds(20) })
        expect(yield* other.describe({ ...ref, providerRef: null })).toBe("pending")
        expect((yield* Effect.flip(other.terminate({ ...ref, providerRef: null }))).reason).toBe("transient")
        const tooOld = yield* providerVia({ visibilityTimeout: Duration.millis(1) })
        expect(yield* tooOld.describe({ ...ref, providerRef: null })).toBe("gone")
        expect((yield* countIn(moto, name)).live).toBe(1)
        proxy.setRules([])
        expect(yield* provider.describe(ref)).toBe("running")
        yield* provider.terminate(ref)
        expect(yield* provider.describe(ref)).toBe("gone")
        expect((yield* countIn(moto, name)).live).toBe(0)
      })
    )

    it.effect("a launch is RunInstances alone; terminating it is TerminateInstances, then one DescribeInstances says gone", () =>
      Effect.gen(function* () {
        const { moto, proxy } = yield* Fixture
        const provider = yield* providerVia()
        // The region's start-up (identity, group, key, image) happens once, before counting.
        const warm = newName()
        yield* spawnNamed(provider, warm)
        yield* cleanUp(provider, warm)
        const name = newName()
        proxy.setRules([])
        const spawned = yield* spawnNamed(provider, name)
        expect(proxy.log()).toEqual(["RunInstances"])
        const ref = { name, providerRef: spawned.providerRef, region: REGION }
        proxy.setRules([])
        expect(yield* provider.describe(ref)).toBe("running")
        expect(proxy.log()).toEqual(["DescribeInstances"])
        proxy.setRules([])
        yield* provider.terminate(ref)
        expect(proxy.log()).toEqual(["TerminateInstances"])
        expect((yield* countIn(moto, name)).live).toBe(0)
        proxy.setRules([])
        expect(yield* provider.describe(ref)).toBe("gone")
        expect(proxy.log()).toEqual(["DescribeInstances"])
        // Once gone, the provider no longer vouches for the name: a second terminate or describe
        // (a reaper, another process) searches by name as well, and still finds nothing.
        proxy.setRules([])
        yield* provider.terminate(ref)
        expect(yield* provider.describe(ref)).toBe("gone")
        expect(proxy.log().filter((a) => a !== "DescribeInstances")).toEqual([])
      })
    )

    it.effect("a termination EC2 answered as ending is gone to describe though DescribeInstances then fails; a live instance's is not", () =>
      Effect.gen(function* () {
        const { moto, proxy } = yield* Fixture
        const provider = yield* providerVia()
        const name = newName()
        const ref = yield* spawnRef(provider, name)
        const other = newName()
        const otherRef = yield* spawnRef(provider, other)
        proxy.setRules([])
        yield* provider.terminate(ref)
        expect((yield* countIn(moto, name)).live).toBe(0)
        // DescribeInstances throttled (its own bucket in EC2) while TerminateInstances worked: the
        // engine's wait for "gone" used to fail after minutes, with the instance long ended.
        proxy.setRules([{ action: "DescribeInstances", calls: "all", fault: { kind: "error", status: 503, code: "RequestLimitExceeded" } }])
        expect(yield* provider.describe(ref)).toBe("gone")
        // An instance nobody terminated is not guessed at: the failure is the answer.
        const refused = yield* Effect.flip(provider.describe(otherRef))
        expect(refused.reason).toBe("throttled")
        yield* cleanUp(provider, other)
      })
    )

    it.effect("another provider (another process) terminating the instance also looks for others of its name", () =>
      Effect.gen(function* () {
        const { moto, proxy } = yield* Fixture
        const provider = yield* providerVia()
        const other = yield* providerVia({}, true)
        const name = newName()
        const ref = yield* spawnRef(provider, name)
        proxy.setRules([])
        yield* other.terminate(ref)
        expect(proxy.log()).toEqual(["DescribeInstances", "DescribeInstances", "TerminateInstances"])
        expect((yield* countIn(moto, name)).live).toBe(0)
        expect(yield* other.describe(ref)).toBe("gone")
        expect(yield* provider.describe(ref)).toBe("gone")
      })
    )

    it.effect("a reaper that ends a young instance known by its name alone says gone at once, not after the visibility window", () =>
      Effect.gen(function* () {
        const { moto, proxy } = yield* Fixture
        const provider = yield* providerVia()
        // A reaper (another process) taking over from an owner killed before RunInstances
        // answered: the record has no id, and the name is a second old.
        const reaper = yield* providerVia({ visibilityTimeout: Duration.minutes(5) }, true)
        const name = newName()
        yield* spawnNamed(provider, name)
        const ref = { name, providerRef: null, region: REGION }
        yield* reaper.terminate(ref)
        expect((yield* countIn(moto, name)).live).toBe(0)
        proxy.setRules([])
        expect(yield* reaper.describe(ref)).toBe("gone")
        // Seen ended by its own hand, the name is no longer "perhaps not visible yet" to it; a
        // name it never ended still is.
        expect(yield* reaper.describe({ name: newName(), providerRef: null, region: REGION })).toBe("pending")
      })
    )

    it.effect("a launch whose first answer was lost while EC2 showed nothing yet may leave two instances: terminate ends both", () =>
      Effect.gen(function* () {
        const { moto, proxy } = yield* Fixture
        const provider = yield* providerVia()
        const name = newName()
        // RunInstances #1 starts an instance but its answer is lost; the look-up before the
        // retry does not see it yet; RunInstances #2 starts a second one.
        proxy.setRules([
          runInstances([1], { kind: "error-after", status: 500, code: "InternalError" }),
          { action: "DescribeInstances", calls: [1], fault: { kind: "hide" } }
        ])
        const spawned = yield* spawnNamed(provider, name)
        expect(proxy.calls("RunInstances")).toBe(2)
        expect(yield* countIn(moto, name)).toEqual({ created: 2, live: 2 })
        proxy.setRules([])
        const ref = { name, providerRef: spawned.providerRef, region: REGION }
        yield* provider.terminate(ref)
        expect((yield* countIn(moto, name)).live).toBe(0)
        expect(yield* provider.describe(ref)).toBe("gone")
      })
    )

    it.effect("a RunInstances whose 200 answer cannot be read started an instance: terminating it before EC2 shows it is not taken for gone", () =>
      Effect.gen(function* () {
        const { moto, proxy } = yield* Fixture
        const provider = yield* providerVia({ visibilityTimeout: Duration.seconds(20) })
        const name = newName()
        // EC2 launched the instance and said so, but the answer arrived cut short; EC2 does not
        // show the instance yet (eventual consistency).
        proxy.setRules([
          runInstances([1], { kind: "garble-after" }),
          { action: "DescribeInstances", calls: "all", fault: { kind: "hide" } },
          { action: "TerminateInstances", calls: "all", fault: { kind: "hide" } }
        ])
        const spawned = yield* Effect.either(spawnNamed(provider, name))
        expect((yield* countIn(moto, name)).live).toBeGreaterThanOrEqual(1)
        const ref = { name, providerRef: Either.isRight(spawned) ? spawned.right.providerRef : null, region: REGION }
        // Saying "gone" now would record the instance terminated while it runs on.
        expect(yield* provider.describe(ref)).toBe("pending")
        expect((yield* Effect.flip(provider.terminate(ref))).reason).toBe("transient")
        proxy.setRules([])
        yield* provider.terminate(ref)
        expect((yield* countIn(moto, name)).live).toBe(0)
      })
    )

    it.effect("a snapshot delete stopped by a refused DeleteSnapshot names what it leaves, lists it as deleting, and a second delete finishes it", () =>
      Effect.gen(function* () {
        const { moto, proxy } = yield* Fixture
        const { provider, snapshots, name, spawned } = yield* snapshotSubject()
        const snapshot = yield* snapshots.create({ name, providerRef: spawned.providerRef, region: REGION }, "left over")
        const ebs = yield* ebsOf(moto, snapshot.id)
        expect(ebs.length).toBeGreaterThan(0)
        proxy.setRules([{ action: "DeleteSnapshot", calls: "all", fault: { kind: "error", status: 403, code: "UnauthorizedOperation" } }])
        const error = yield* Effect.flip(snapshots.delete(snapshot.id, REGION))
        expect(error.reason).toBe("auth")
        expect(awsErrorCode(error)).toBe("UnauthorizedOperation")
        expect(error.message).toContain(`${snapshot.id} is deregistered, but its EBS snapshot`)
        for (const id of ebs) expect(error.message).toContain(id)
        expect(error.message).toContain(`repl snapshot delete ${snapshot.id} --provider aws --region ${REGION} deletes`)
        expect(yield* imagesIn(moto, [snapshot.id])).toEqual([])
        expect(yield* snapshotsIn(moto, ebs)).toEqual(ebs)
        proxy.setRules([])
        // What is left is still a snapshot to the user: it is billed, and its id finishes it.
        expect((yield* snapshots.list()).find((s) => s.id === snapshot.id)).toEqual({
          id: snapshot.id,
          name: "left over",
          provider: "aws",
          region: REGION,
          source: name,
          state: "deleting",
          createdAt: expect.any(Number)
        })
        yield* snapshots.delete(snapshot.id, REGION)
        expect(yield* snapshotsIn(moto, ebs)).toEqual([])
        expect((yield* snapshots.list()).some((s) => s.id === snapshot.id)).toBe(false)
        yield* snapshots.delete(snapshot.id, REGION)
        yield* cleanUp(provider, name)
      })
    )

    it.effect("a DeleteSnapshot that says the snapshot is still in use by the image just deregistered is tried again until it is not", () =>
      Effect.gen(function* () {
        const { moto, proxy } = yield* Fixture
        const { provider, snapshots, name, spawned } = yield* snapshotSubject({ visibilityTimeout: Duration.millis(1_500) })
        const inUse = (id: string) =>
          ({ kind: "error", status: 400, code: "InvalidSnapshot.InUse", message: `The snapshot ${id} is currently in use by ami-0123456789abcdef0` }) as const
        const first = yield* snapshots.create({ name, providerRef: spawned.providerRef, region: REGION }, "in use a moment")
        const ebs = yield* ebsOf(moto, first.id)
        proxy.setRules([{ action: "DeleteSnapshot", calls: [1, 2], fault: inUse(ebs[0] ?? "") }])
        yield* snapshots.delete(first.id, REGION)
        expect(proxy.calls("DeleteSnapshot")).toBe(2 + ebs.length)
        expect(yield* snapshotsIn(moto, ebs)).toEqual([])
        // In use for longer than an image may take to show: in use for real. It fails saying
        // so and what is left, within the bound, and is not retryable.
        const second = yield* snapshots.create({ name, providerRef: spawned.providerRef, region: REGION }, "in use for good")
        const left = yield* ebsOf(moto, second.id)
        proxy.setRules([{ action: "DeleteSnapshot", calls: "all", fault: inUse(left[0] ?? "") }])
        const started = Date.now()
        const error = yield* Effect.flip(snapshots.delete(second.id, REGION))
        expect(Date.now() - started).toBeLessThan(5_000)
        expect([error.reason, awsErrorCode(error)]).toEqual(["invalid-request", "InvalidSnapshot.InUse"])
        expect(error.message).toContain(`is currently in use by ami-0123456789abcdef0. ${second.id} is deregistered, but its EBS snapshot`)
        proxy.setRules([])
        yield* snapshots.delete(second.id, REGION)
        expect(yield* snapshotsIn(moto, left)).toEqual([])
        yield* cleanUp(provider, name)
      })
    )

    it.effect("an image whose EBS snapshots were made untagged (before they were tagged at creation) is finished by a second delete too", () =>
      Effect.gen(function* () {
        const { moto, proxy } = yield* Fixture
        const { provider, snapshots, name, spawned } = yield* snapshotSubject()
        // As an earlier SkyREPL made it: only the image tagged.
        const client = rawClient(moto.url)
        const made = yield* Effect.promise(() =>
          client.send(
            new CreateImageCommand({
              InstanceId: spawned.providerRef,
              Name: `untagged ${name}`,
              NoReboot: true,
              TagSpecifications: [{ ResourceType: "image", Tags: [{ Key: "skyrepl:managed", Value: "true" }, { Key: "skyrepl:source", Value: name }] }]
            })
          )
        )
        client.destroy()
        const imageId = made.ImageId ?? ""
        const ebs = yield* ebsOf(moto, imageId)
        expect(ebs.length).toBeGreaterThan(0)
        proxy.setRules([{ action: "DeleteSnapshot", calls: "all", fault: { kind: "error", status: 503, code: "ServiceUnavailable" } }])
        const error = yield* Effect.flip(snapshots.delete(imageId, REGION))
        expect([error.reason, error.retried]).toEqual(["transient", true])
        proxy.setRules([])
        expect((yield* snapshots.list()).find((s) => s.id === imageId)).toMatchObject({ state: "deleting", name: `untagged ${name}`, source: name })
        yield* snapshots.delete(imageId, REGION)
        expect(yield* snapshotsIn(moto, ebs)).toEqual([])
        yield* cleanUp(provider, name)
      })
    )

    for (const lost of createImageLosses) {
      it.effect(`a CreateImage whose answer is lost: ${lost.title}`, () =>
        Effect.gen(function* () {
          const { moto, proxy } = yield* Fixture
          const { provider, snapshots, name, spawned } = yield* snapshotSubject(lost.options ?? {})
          const imageName = `lost answer ${name}`
          proxy.setRules(lost.rules)
          const exit = yield* Effect.exit(snapshots.create({ name, providerRef: spawned.providerRef, region: REGION }, imageName))
          const calls = proxy.calls("CreateImage")
          const looks = proxy.calls("DescribeImages")
          proxy.setRules([])
          const made = yield* imagesNamed(moto, imageName)
          expect(calls).toBe(1)
          if (lost.describeImagesCalls !== undefined) expect(looks).toBe(lost.describeImagesCalls)
          if (lost.outcome === "made") {
            if (Exit.isFailure(exit)) return expect.unreachable(`expected the snapshot, got ${String(exit)}`)
            expect(made).toEqual([exit.value.id])
            expect(exit.value).toMatchObject({ name: imageName, provider: "aws", region: REGION, source: name })
            expect((yield* snapshots.list()).map((s) => s.id)).toContain(exit.value.id)
            yield* snapshots.delete(exit.value.id, REGION)
          } else {
            const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
            if (Option.isNone(failure)) return expect.unreachable(`expected a ProviderError, got ${String(exit)}`)
            expect([failure.value.reason, failure.value.operation]).toEqual([lost.outcome.reason, "CreateImage"])
            expect(failure.value.message).toMatch(lost.outcome.message)
            expect(made).toHaveLength(lost.leavesImage === true ? 1 : 0)
            for (const id of made) yield* snapshots.delete(id, REGION)
          }
          yield* cleanUp(provider, name)
        })
      )
    }

    it.effect("a 200 page that is no EC2 answer is a failure, never an instance gone: a reaper leaves the instance and its record", () =>
      Effect.gen(function* () {
        const { moto, proxy } = yield* Fixture
        const provider = yield* providerVia()
        const name = newName()
        const ref = yield* spawnRef(provider, name)
        expect(yield* provider.describe(ref)).toBe("running")
        // A proxy or captive portal now answers every call with its own page.
        proxy.setRules([
          { action: "DescribeInstances", calls: "all", fault: { kind: "page" } },
          { action: "TerminateInstances", calls: "all", fault: { kind: "page" } }
        ])
        const reaper = yield* providerVia({ visibilityTimeout: Duration.millis(1) })
        expect((yield* Effect.flip(reaper.describe(ref))).reason).toBe("internal")
        expect((yield* Effect.flip(reaper.terminate(ref))).reason).toBe("internal")
        // A termination with no answer to read may have taken effect: asked again, and retryable.
        expect((yield* Effect.flip(provider.terminate(ref))).reason).toBe("transient")
        expect((yield* Effect.flip(reaper.list())).reason).toBe("internal")
        expect((yield* countIn(moto, name)).live).toBe(1)
        yield* cleanUp(provider, name)
      })
    )

    it.effect("an error page that is no AWS answer says its HTTP status, not the SDK's Unknown", () =>
      Effect.gen(function* () {
        const { proxy } = yield* Fixture
        const provider = yield* providerVia({ callRetry: Schedule.stop })
        proxy.setRules([{ action: "DescribeInstances", calls: "all", fault: { kind: "page", status: 502 } }])
        const error = yield* Effect.flip(provider.describe({ name: newName(), providerRef: null, region: REGION }))
        proxy.setRules([])
        expect(error.reason).toBe("transient")
        expect(error.message).toBe(
          `DescribeInstances in ${REGION} failed (Unknown): HTTP 502 from the endpoint ${proxy.url} with a body that is no AWS answer: check that it is EC2 and that it knows region ${REGION}`
        )
      })
    )

    it.effect("a region the endpoint does not know (moto answers an HTML 500) is said in one line naming the region and the endpoint, never its password", () =>
      Effect.gen(function* () {
        const { moto, dir } = yield* Fixture
        const endpoint = moto.url.replace("http://", "http://ci:hunter2@")
        const provider = yield* AwsProvider.make({ ...optionsFor(moto, dir, { region: "xx-nowhere-1", callRetry: Schedule.stop }), endpoint })
        const error = yield* Effect.flip(provider.list())
        expect(error.message).toBe(
          `DescribeInstances in xx-nowhere-1 failed (UnknownError): HTTP 500 from the endpoint ${moto.url} with a body that is no AWS answer: ` +
            `check that it is EC2 and that it knows region xx-nowhere-1`
        )
        const spawned = yield* Effect.flip(spawnNamed(provider, newName()))
        expect(spawned.message).toMatch(/^[A-Za-z]+ in xx-nowhere-1 failed \(UnknownError\): HTTP 500 from the endpoint http:\/\/127\.0\.0\.1:[0-9]+ with .*region xx-nowhere-1$/)
        expect(spawned.nothingStarted).toBe(true)
      })
    )

    it.effect("an answer cut short is said in one line, without the SDK's advice to read a hidden field", () =>
      Effect.gen(function* () {
        const { proxy } = yield* Fixture
        const provider = yield* providerVia()
        proxy.setRules([{ action: "DescribeInstances", calls: "all", fault: { kind: "garble-after" } }])
        const error = yield* Effect.flip(provider.describe({ name: newName(), providerRef: null, region: REGION }))
        proxy.setRules([])
        expect(error.message).toMatch(/DescribeInstances in us-east-1 failed .*XML parse error/)
        expect(error.message).not.toMatch(/\n|\$response|hidden field/)
      })
    )

    it.effect("a call unanswered within requestTimeout fails as TimeoutError at the limit, not when the answer comes", () =>
      Effect.gen(function* () {
        const { proxy } = yield* Fixture
        const provider = yield* providerVia({ requestTimeout: Duration.millis(300), callRetry: Schedule.stop })
        proxy.setRules([{ action: "DescribeInstances", calls: "all", fault: { kind: "delay", ms: 3_000 } }])
        const started = Date.now()
        const error = yield* Effect.flip(provider.describe({ name: newName(), providerRef: null, region: REGION }))
        const took = Date.now() - started
        proxy.setRules([])
        expect(error.reason).toBe("transient")
        expect(awsErrorCode(error)).toBe("TimeoutError")
        expect(took).toBeLessThan(2_000)
      })
    )

    it.effect("an interrupted call returns at once and abandons its request", () =>
      Effect.gen(function* () {
        const { proxy } = yield* Fixture
        const provider = yield* providerVia({ requestTimeout: Duration.seconds(30), callRetry: Schedule.stop })
        proxy.setRules([{ action: "DescribeInstances", calls: "all", fault: { kind: "delay", ms: 1_500 } }])
        const started = Date.now()
        const fiber = yield* Effect.fork(provider.describe({ name: newName(), providerRef: null, region: REGION }))
        while (proxy.calls("DescribeInstances") === 0) yield* Effect.sleep(Duration.millis(10))
        yield* Fiber.interrupt(fiber)
        const took = Date.now() - started
        // The request is aborted, not left to run: the proxy sees its client go away.
        const until = Date.now() + 1_000
        while (proxy.abandoned("DescribeInstances") === 0 && Date.now() < until) yield* Effect.sleep(Duration.millis(10))
        const abandoned = proxy.abandoned("DescribeInstances")
        proxy.setRules([])
        expect(took).toBeLessThan(1_000)
        expect(abandoned).toBe(1)
      })
    )

    it.effect("STS refusing the credentials fails the launch as auth, naming whose credentials", () =>
      Effect.gen(function* () {
        const { proxy } = yield* Fixture
        const provider = yield* providerVia(undefined, true)
        proxy.setRules([{ action: "GetCallerIdentity", calls: "all", fault: { kind: "error", status: 403, code: "InvalidClientTokenId" } }])
        const error = yield* Effect.flip(spawnNamed(provider, newName()))
        const runs = proxy.calls("RunInstances")
        proxy.setRules([])
        expect(error.reason).toBe("auth")
        expect(awsErrorCode(error)).toBe("InvalidClientTokenId")
        expect(error.message).toContain("the credentials given in code (access key test…ting)")
        expect(runs).toBe(0)
      })
    )

    it.effect("errors on list and terminate: transient ones are retried, persistent ones surface and leave the instance for a later try", () =>
      Effect.gen(function* () {
        const { moto, proxy } = yield* Fixture
        const provider = yield* providerVia()
        const name = newName()
        const spawned = yield* spawnNamed(provider, name)
        proxy.setRules([{ action: "DescribeInstances", calls: [1, 2], fault: { kind: "error", status: 500, code: "InternalError" } }])
        expect((yield* provider.list()).map((i) => i.name)).toContain(name)
        proxy.setRules([{ action: "TerminateInstances", calls: "all", fault: { kind: "error", status: 503, code: "Unavailable" } }])
        const ref = { name, providerRef: spawned.providerRef, region: REGION }
        const failed = yield* Effect.flip(provider.terminate(ref))
        // Tried once and retried four times (the test's callRetry), then marked as retried, so
        // the engine does not run those retries again; a refusal is tried once, unmarked.
        expect([failed.reason, failed.retried, proxy.calls("TerminateInstances")]).toEqual(["transient", true, 5])
        proxy.setRules([{ action: "TerminateInstances", calls: "all", fault: { kind: "error", status: 403, code: "UnauthorizedOperation" } }])
        const refused = yield* Effect.flip(provider.terminate(ref))
        expect([refused.reason, refused.retried, proxy.calls("TerminateInstances")]).toEqual(["auth", undefined, 1])
        expect(yield* provider.describe(ref)).toBe("running")
        proxy.setRules([])
        yield* provider.terminate(ref)
        yield* provider.terminate(ref)
        expect(yield* provider.describe(ref)).toBe("gone")
        expect((yield* countIn(moto, name)).live).toBe(0)
      })
    )

    it.effect("a TerminateInstances whose 200 answer cannot be read is retried (terminating twice is harmless), and stays retryable if it never reads", () =>
      Effect.gen(function* () {
        const { moto, proxy } = yield* Fixture
        const provider = yield* providerVia()
        const name = newName()
        const ref = yield* spawnRef(provider, name)
        proxy.setRules([{ action: "TerminateInstances", calls: [1], fault: { kind: "garble-after" } }])
        yield* provider.terminate(ref)
        expect(proxy.calls("TerminateInstances")).toBe(2)
        expect(yield* provider.describe(ref)).toBe("gone")
        expect((yield* countIn(moto, name)).live).toBe(0)
        // Cut short every time: the provider's retries spent, the engine's termination retry
        // still applies (transient), and the message says the call may have done its work.
        const other = newName()
        const otherRef = yield* spawnRef(provider, other)
        proxy.setRules([{ action: "TerminateInstances", calls: "all", fault: { kind: "garble-after" } }])
        const failed = yield* Effect.flip(provider.terminate(otherRef))
        expect([failed.reason, failed.retried, proxy.calls("TerminateInstances")]).toEqual(["transient", true, 5])
        expect(failed.message).toMatch(/^TerminateInstances in us-east-1 failed \(UnknownError\): .*XML parse error[^\n]*; its answer could not be read, so EC2 may have taken the termination \(terminating again is harmless\)$/)
        proxy.setRules([])
        yield* provider.terminate(otherRef)
        expect((yield* countIn(moto, other)).live).toBe(0)
      })
    )

    it.effect("a region the store names that can hold no instance (not enabled, no such name) is skipped with a warning, not the listing", () =>
      Effect.gen(function* () {
        const { proxy } = yield* Fixture
        const provider = yield* providerVia()
        const name = newName()
        yield* spawnNamed(provider, name)
        const refused = { kind: "error", status: 401, code: "OptInRequired", message: "You are not subscribed to this service." } as const
        proxy.setRules([{ action: "DescribeInstances", calls: "all", region: "ap-east-1", fault: refused }])
        const warnings: Array<string> = []
        const logger = Logger.make(({ logLevel, message }) => {
          if (logLevel._tag === "Warning") warnings.push(String(message))
        })
        const listed = yield* provider.list({ regions: ["ap-east-1"] }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
        expect(listed.map((i) => i.name)).toContain(name)
        expect(proxy.calls("DescribeInstances")).toBeGreaterThanOrEqual(2)
        expect(warnings).toEqual([expect.stringMatching(/^skipped region ap-east-1, which can hold no instance: .*OptInRequired/)])
        // The configured region refusing the same way still fails the listing: it is no hint.
        proxy.setRules([{ action: "DescribeInstances", calls: "all", region: REGION, fault: refused }])
        const error = yield* Effect.flip(provider.list({ regions: ["ap-east-1"] }))
        proxy.setRules([])
        expect([error.reason, error.message]).toEqual(["auth", expect.stringContaining("OptInRequired")])
        yield* provider.terminate({ name, providerRef: null, region: REGION })
      })
    )

    it.effect("a connection closed without an answer is retried as transient on either runtime", () =>
      Effect.gen(function* () {
        const { proxy } = yield* Fixture
        const provider = yield* providerVia()
        const name = newName()
        yield* spawnNamed(provider, name)
        proxy.setRules([{ action: "DescribeInstances", calls: [1], fault: { kind: "reset" } }])
        expect((yield* provider.list()).map((i) => i.name)).toContain(name)
        expect(proxy.calls("DescribeInstances")).toBeGreaterThanOrEqual(2)
        proxy.setRules([{ action: "DescribeInstances", calls: "all", fault: { kind: "reset" } }])
        const failed = yield* Effect.flip(provider.list())
        expect(failed.reason).toBe("transient")
        expect(failed.message).toMatch(/ECONNRESET|EPIPE|ECONNABORTED|ECONNREFUSED/)
        yield* cleanUp(provider, name)
      })
    )

    it.effect("start-up: the security group allows SSH from anywhere, the key's PEM is 0600, spot goes through InstanceMarketOptions", () =>
      Effect.gen(function* () {
        const { moto, dir } = yield* Fixture
        const provider = yield* providerVia()
        const name = newName()
        const spec = yield* Effect.orDie(provider.parseSpec("t4g.nano", { spot: true }))
        const spawned = yield* provider.spawn(name, spec, { agentUrl: "http://127.0.0.1:9", token: "t", heartbeatIntervalMs: 1000, deadmanTimeoutMs: 5000, agentScript: agentScriptPath })
        const client = rawClient(moto.url)
        const groups = yield* Effect.promise(() => client.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: "group-name", Values: ["skyrepl-default"] }] })))
        const ssh = groups.SecurityGroups?.[0]?.IpPermissions?.find((p) => p.FromPort === 22 && p.ToPort === 22)
        expect(ssh?.IpRanges?.map((r) => r.CidrIp)).toEqual(["0.0.0.0/0"])
        expect(ssh?.Ipv6Ranges?.map((r) => r.CidrIpv6)).toEqual(["::/0"])
        const pem = readdirSync(join(dir, "home", "keys")).filter((f) => f.startsWith(`aws-${REGION}`) && f.endsWith(".pem"))
        expect(pem).toHaveLength(1)
        expect(statSync(join(dir, "home", "keys", pem[0] ?? "")).mode & 0o777).toBe(0o600)
        expect(readFileSync(join(dir, "home", "keys", pem[0] ?? ""), "utf8")).toMatch(/^-----BEGIN RSA PRIVATE KEY-----/)
        const described = yield* Effect.promise(() => client.send(new DescribeInstancesCommand({ InstanceIds: [spawned.providerRef] })))
        const instance = described.Reservations?.[0]?.Instances?.[0]
        expect(instance?.InstanceLifecycle).toBe("spot")
        expect(instance?.KeyName).toBe(`skyrepl-${REGION}`)
        expect(instance?.InstanceType).toBe("t4g.nano")
        client.destroy()
        yield* cleanUp(provider, name)
      })
    )

    it.effect("start-up: a key pair that exists in AWS without its PEM here is reported, never replaced", () =>
      Effect.gen(function* () {
        const { moto, proxy, dir } = yield* Fixture
        // Another state home (another machine) finds the pair the first one created.
        const provider = yield* AwsProvider.make({ ...optionsFor(moto, join(dir, "elsewhere")), endpoint: proxy.url })
        proxy.setRules([])
        const error = yield* Effect.flip(spawnNamed(provider, newName()))
        expect(error.reason).toBe("invalid-request")
        expect(error.message).toContain(`the key pair skyrepl-${REGION} exists in ${REGION} but its private key`)
        expect(error.message).toContain("never replaces a key pair silently")
        expect(proxy.calls("CreateKeyPair")).toBe(0)
        expect(proxy.calls("DeleteKeyPair")).toBe(0)
        expect(proxy.calls("RunInstances")).toBe(0)
      })
    )

    it.effect("start-up: a key pair whose CreateKeyPair answer was lost here is made again, not reported as another machine's", () =>
      Effect.gen(function* () {
        const { moto, proxy, dir } = yield* Fixture
        const region = "ap-southeast-2"
        const options = { ...optionsFor(moto, join(dir, "lost-key"), { region }), endpoint: proxy.url }
        const first = yield* AwsProvider.make(options)
        // AWS creates the pair, but its answer, the only copy of the private key, is lost.
        proxy.setRules([{ action: "CreateKeyPair", calls: [1], fault: { kind: "error-after", status: 500, code: "InternalError" } }])
        const lost = yield* Effect.flip(spawnNamed(first, newName()))
        expect(lost.reason).toBe("transient")
        expect(proxy.calls("RunInstances")).toBe(0)
        // The next try (the engine's, or the next process's) recognises the pair as its own.
        proxy.setRules([])
        const next = yield* AwsProvider.make(options)
        const name = newName()
        yield* spawnNamed(next, name)
        expect(proxy.calls("DeleteKeyPair")).toBe(1)
        expect(proxy.calls("CreateKeyPair")).toBe(1)
        const keys = readdirSync(join(dir, "lost-key", "home", "keys"))
        expect(keys.filter((f) => f.startsWith(`aws-${region}`) && f.endsWith(".pem"))).toHaveLength(1)
        expect(keys.filter((f) => f.includes(".creating-"))).toEqual([])
        yield* next.terminate({ name, providerRef: null, region })
        expect((yield* liveInMoto(moto.url, region)).filter((i) => i.name === name)).toEqual([])
      })
    )

    it.effect("start-up: an endpoint's userinfo (a password) is in no file name or file; a key an earlier version named with it keeps working", () =>
      Effect.gen(function* () {
        const { moto, proxy, dir } = yield* Fixture
        const region = "ap-northeast-1"
        const home = join(dir, "userinfo")
        const withSecret = proxy.url.replace("http://", "http://ci-user:hunter2-secret@")
        const options = { ...optionsFor(moto, home, { region }), endpoint: withSecret }
        const onDisk = () =>
          [join(home, "home", "keys"), join(home, "cache")].flatMap((d) => readdirSync(d).map((f) => ({ name: f, text: readFileSync(join(d, f), "utf8") })))
        proxy.setRules([])
        const first = yield* AwsProvider.make(options)
        const name = newName()
        yield* spawnNamed(first, name)
        const written = onDisk()
        expect(written.map((f) => f.name)).toContain(`aws-${region}@127.0.0.1_${new URL(proxy.url).port}.pem`)
        for (const f of written) expect(`${f.name} ${f.text}`).not.toMatch(/hunter2|ci-user/)
        yield* first.terminate({ name, providerRef: null, region })
        // An earlier version named the key after the whole endpoint, userinfo and all: it is
        // renamed, and used, not reported missing (the pair exists in AWS).
        const keys = join(home, "home", "keys")
        const now = `aws-${region}@127.0.0.1_${new URL(proxy.url).port}.pem`
        const legacy = `aws-${region}@ci-user_hunter2-secret_127.0.0.1_${new URL(proxy.url).port}.pem`
        renameSync(join(keys, now), join(keys, legacy))
        proxy.setRules([])
        const next = yield* AwsProvider.make(options)
        const other = newName()
        yield* spawnNamed(next, other)
        expect(proxy.calls("CreateKeyPair")).toBe(0)
        expect(readdirSync(keys)).toEqual([now])
        // The same server without userinfo has the same key.
        const plain = yield* AwsProvider.make({ ...options, endpoint: proxy.url })
        const third = newName()
        yield* spawnNamed(plain, third)
        expect(proxy.calls("CreateKeyPair")).toBe(0)
        yield* next.terminate({ name: other, providerRef: null, region })
        yield* plain.terminate({ name: third, providerRef: null, region })
        expect((yield* liveInMoto(moto.url, region)).filter((i) => [name, other, third].includes(i.name ?? ""))).toEqual([])
      })
    )

    it.effect("capacity retries go to the next availability zone each time; without the subnets listed, they stay where EC2 picks", () =>
      Effect.gen(function* () {
        const { moto, proxy } = yield* Fixture
        // Its own provider: the shared one has listed the subnets already (the scenarios above).
        const provider = yield* providerVia({}, true)
        const zoneOf = new Map(
          (yield* Effect.promise(() => rawClient(moto.url).send(new DescribeSubnetsCommand({ Filters: [{ Name: "default-for-az", Values: ["true"] }] }))))
            .Subnets?.map((s) => [s.SubnetId ?? "", s.AvailabilityZone ?? ""] as const) ?? []
        )
        expect(zoneOf.size).toBeGreaterThan(2)
        const ice = runInstances([1, 2], { kind: "error", status: 500, code: "InsufficientInstanceCapacity" })
        proxy.setRules([ice])
        const name = newName()
        const spawned = yield* spawnNamed(provider, name)
        const subnets = proxy.params("RunInstances").map((p) => p.get("SubnetId"))
        expect(subnets).toHaveLength(3)
        // The first names no subnet (EC2 picks); each retry after a refusal the next zone's.
        expect(subnets[0]).toBeNull()
        const zones = subnets.slice(1).map((id) => zoneOf.get(id ?? ""))
        expect(zones.every((z) => z !== undefined)).toBe(true)
        expect(new Set(zones).size).toBe(2)
        expect(proxy.calls("DescribeSubnets")).toBe(1)
        expect((yield* rawInstance(moto.url, spawned.providerRef))?.SubnetId).toBe(subnets[2])
        yield* cleanUp(provider, name)

        // A provider that may not list subnets still waits the shortage out, in EC2's choice of zone.
        const refused = yield* providerVia({}, true)
        proxy.setRules([ice, { action: "DescribeSubnets", calls: "all", fault: { kind: "error", status: 403, code: "UnauthorizedOperation" } }])
        const other = newName()
        yield* spawnNamed(refused, other)
        expect(proxy.params("RunInstances").map((p) => p.get("SubnetId"))).toEqual([null, null, null])
        expect(proxy.calls("DescribeSubnets")).toBe(1)
        yield* cleanUp(refused, other)
      })
    )

    it.effect("terminateSync, for a process that is exiting: its own launch is terminated in EC2 before it returns", () =>
      Effect.gen(function* () {
        const { moto, dir } = yield* Fixture
        const provider = yield* AwsProvider.make(direct(moto, dir))
        const name = newName()
        yield* spawnNamed(provider, name)
        expect((yield* countIn(moto, name, DIRECT_REGION)).live).toBe(1)
        provider.terminateSync?.({ name, providerRef: null, region: null })
        expect(yield* countIn(moto, name, DIRECT_REGION)).toEqual({ created: 1, live: 0 })
        expect(yield* provider.describe({ name, providerRef: null, region: DIRECT_REGION })).toBe("gone")
      })
    )

    it.scoped("terminateSync for another process's launch terminates what carries the name (a twin too), nothing else", () =>
      Effect.gen(function* () {
        const { moto, dir } = yield* Fixture
        const launcher = yield* AwsProvider.make(direct(moto, dir))
        const [name, other, neighbour] = [newName(), newName(), newName()]
        const spawned = yield* spawnNamed(launcher, name)
        yield* spawnNamed(launcher, other)
        yield* spawnNamed(launcher, neighbour)
        // A second instance under the first's name, as a launch whose answer was lost may leave.
        yield* runRaw(moto.url, { Name: name, "skyrepl:managed": "true" }, DIRECT_REGION)
        expect((yield* countIn(moto, name, DIRECT_REGION)).live).toBe(2)
        const exiting = yield* AwsProvider.make(direct(moto, dir))
        // With the id, as a reaper's record has it, and without one.
        exiting.terminateSync?.({ name, providerRef: spawned.providerRef, region: null })
        exiting.terminateSync?.({ name: other, providerRef: null, region: null })
        expect((yield* countIn(moto, name, DIRECT_REGION)).live).toBe(0)
        expect((yield* countIn(moto, other, DIRECT_REGION)).live).toBe(0)
        expect((yield* countIn(moto, neighbour, DIRECT_REGION)).live).toBe(1)
        yield* launcher.terminate({ name: neighbour, providerRef: null, region: DIRECT_REGION })
      })
    )

    it.scoped("terminateSync with a recorded id EC2 does not know still terminates what carries the name", () =>
      Effect.gen(function* () {
        const { moto, dir } = yield* Fixture
        const name = newName()
        // Only a twin is live: the record's id names an instance EC2 no longer lists (or does
        // not list yet). EC2 refuses a TerminateInstances naming it, for every id in the call.
        yield* runRaw(moto.url, { Name: name, "skyrepl:managed": "true" }, DIRECT_REGION)
        const exiting = yield* AwsProvider.make(direct(moto, dir))
        exiting.terminateSync?.({ name, providerRef: "i-0123456789abcdef0", region: null })
        expect((yield* countIn(moto, name, DIRECT_REGION)).live).toBe(0)
      })
    )

    /**
     * terminate-at-exit.mjs started as terminateSync starts it, but without blocking this process:
     * what it is asked to end may appear while it looks.
     */
    const exitHelper = (endpoint: string, name: string, mayBeInvisible: boolean, giveUpInMs: number) =>
      execa(process.execPath, [join(import.meta.dirname, "..", "src", "terminate-at-exit.mjs")], {
        input: JSON.stringify({
          region: DIRECT_REGION,
          endpoint,
          profile: null,
          credentials: motoCredentials,
          ids: [],
          searchByName: true,
          name,
          managedTag: "skyrepl:managed",
          mayBeInvisible,
          giveUpAt: Date.now() + giveUpInMs
        }),
        reject: false
      })

    it.scoped("at exit, an instance too new to be listed is looked for again, and terminated once it shows", () =>
      Effect.gen(function* () {
        const { moto } = yield* Fixture
        const name = newName()
        const helper = exitHelper(moto.url, name, true, 8_000)
        // Listed only after the helper has looked once and found nothing.
        yield* Effect.sleep(Duration.millis(1_500))
        yield* runRaw(moto.url, { Name: name, "skyrepl:managed": "true" }, DIRECT_REGION)
        const ended = yield* Effect.promise(() => helper)
        expect([ended.exitCode, ended.stderr]).toEqual([0, ""])
        expect(JSON.parse(ended.stdout).terminated).toHaveLength(1)
        expect((yield* countIn(moto, name, DIRECT_REGION)).live).toBe(0)
      })
    )

    it.effect("at exit, an instance too new to be listed that never shows: one line when the time is up; one that cannot be new: done at once", () =>
      Effect.gen(function* () {
        const { moto } = yield* Fixture
        const name = newName()
        const started = Date.now()
        const waited = yield* Effect.promise(() => exitHelper(moto.url, name, true, 1_500))
        expect([waited.exitCode, waited.stderr]).toEqual([1, `${name} was just created and EC2 does not list it yet`])
        expect(Date.now() - started).toBeGreaterThanOrEqual(1_250)
        const done = yield* Effect.promise(() => exitHelper(moto.url, name, false, 8_000))
        expect([done.exitCode, done.stderr, done.stdout]).toEqual([0, "", JSON.stringify({ terminated: [] })])
      })
    )

    it.scoped("at exit, a TerminateInstances whose answer cannot be read, or names no instance, is tried again; a refusal of the request is not", () =>
      Effect.gen(function* () {
        const { moto, proxy } = yield* Fixture
        const name = newName()
        yield* runRaw(moto.url, { Name: name, "skyrepl:managed": "true" }, DIRECT_REGION)
        proxy.setRules([{ action: "TerminateInstances", calls: [1], fault: { kind: "garble-after" } }])
        const ended = yield* Effect.promise(() => exitHelper(proxy.url, name, false, 8_000))
        expect([ended.exitCode, ended.stderr]).toEqual([0, ""])
        // Looked again: moto had taken the first termination, so the second look finds nothing
        // live by the name, which is done.
        expect([proxy.calls("DescribeInstances"), proxy.calls("TerminateInstances")]).toEqual([2, 1])
        expect((yield* countIn(moto, name, DIRECT_REGION)).live).toBe(0)
        // A 200 that names no instance (a proxy's page, which the SDK reads as an empty answer;
        // EC2 never saw the call) is no termination either: tried again, it reaches EC2.
        const paged = newName()
        yield* runRaw(moto.url, { Name: paged, "skyrepl:managed": "true" }, DIRECT_REGION)
        proxy.setRules([{ action: "TerminateInstances", calls: [1], fault: { kind: "page" } }])
        const afterPage = yield* Effect.promise(() => exitHelper(proxy.url, paged, false, 8_000))
        expect([afterPage.exitCode, afterPage.stderr, proxy.calls("TerminateInstances")]).toEqual([0, "", 2])
        expect((yield* countIn(moto, paged, DIRECT_REGION)).live).toBe(0)
        // AWS refusing the request itself goes the same way every time: said at once.
        const other = newName()
        yield* runRaw(moto.url, { Name: other, "skyrepl:managed": "true" }, DIRECT_REGION)
        proxy.setRules([{ action: "TerminateInstances", calls: "all", fault: { kind: "error", status: 403, code: "UnauthorizedOperation" } }])
        const refused = yield* Effect.promise(() => exitHelper(proxy.url, other, false, 8_000))
        proxy.setRules([])
        expect(refused.exitCode).toBe(1)
        expect(refused.stderr).toMatch(/^UnauthorizedOperation: /)
        expect(proxy.calls("TerminateInstances")).toBe(0)
      })
    )

    it.effect("terminateSync with EC2 not answering returns at the provider's requestTimeout and says why on stderr", () =>
      Effect.gen(function* () {
        const { proxy } = yield* Fixture
        // The proxy lives in this process, which terminateSync blocks: it cannot answer.
        const provider = yield* providerVia({ requestTimeout: Duration.seconds(1) }, true)
        const name = newName()
        yield* spawnNamed(provider, name)
        proxy.setRules([])
        const said: Array<string> = []
        const write = process.stderr.write.bind(process.stderr)
        process.stderr.write = (chunk: string | Uint8Array) => said.push(String(chunk)) > 0
        const started = Date.now()
        try {
          provider.terminateSync?.({ name, providerRef: null, region: null })
        } finally {
          process.stderr.write = write
        }
        const took = Date.now() - started
        expect(took).toBeGreaterThanOrEqual(1_000)
        expect(took).toBeLessThan(5_000)
        expect(said).toEqual([
          `skyrepl: could not terminate ${name} while exiting (no answer from EC2 within 1000 ms); the agent's dead-man switch ends it later\n`
        ])
        yield* cleanUp(provider, name)
      })
    )

    it.effect("nothing launched in this file is left running in moto", () =>
      Effect.gen(function* () {
        const { moto } = yield* Fixture
        const live = [...(yield* liveInMoto(moto.url)), ...(yield* liveInMoto(moto.url, DIRECT_REGION))]
        const ours = live.filter((i) => i.name?.startsWith(`repl-${controlId}-`) === true)
        expect(ours).toEqual([])
      })
    )
  })
})
