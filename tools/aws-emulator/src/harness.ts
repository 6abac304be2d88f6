import {
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  EC2Client,
  StopInstancesCommand,
  TerminateInstancesCommand
} from "@aws-sdk/client-ec2"
import { Duration, Effect, Fiber, Schedule, Schema, type Scope } from "effect"
import type { ChildProcess } from "node:child_process"
import { existsSync, mkdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { gunzipSync } from "node:zlib"
import { EmulatorError, motoCredentials } from "./moto.ts"
import { canSandbox, sandboxPaths, type SandboxPaths, startSandbox } from "./sandbox.ts"

export interface BootHarnessOptions {
  /** The moto endpoint. */
  readonly endpoint: string
  /** Regions to watch for new instances. */
  readonly regions: ReadonlyArray<string>
  /** Per-instance directories (sandbox files, logs) go here. */
  readonly workDir: string
  /** How often moto is asked for new and ended instances. Default 150 ms. */
  readonly pollInterval?: Duration.DurationInput
  readonly log?: (line: string) => void
}

/** What the harness did with one moto instance. */
export interface HarnessInstance {
  readonly instanceId: string
  readonly region: string
  readonly dir: string
  /** `booted`: its user-data runs in a sandbox; `no-user-data`: nothing to run; `ended`: its sandbox is gone. */
  readonly status: "booted" | "no-user-data" | "ended"
  /** Power requests its fakes received, e.g. `poweroff ` or `systemctl poweroff`. */
  readonly powerRequests: ReadonlyArray<string>
  /** What the harness asked moto to do about a power-off: `terminate` or `stop`. */
  readonly poweredOff: "terminate" | "stop" | null
}

export interface BootHarness {
  readonly instances: Effect.Effect<ReadonlyArray<HarnessInstance>>
  /** Waits until the harness has seen `instanceId` reach `status`. */
  readonly awaitStatus: (
    instanceId: string,
    status: HarnessInstance["status"],
    timeout: Duration.DurationInput
  ) => Effect.Effect<HarnessInstance, EmulatorError>
}

const Instances = Schema.Struct({
  Reservations: Schema.optional(
    Schema.Array(
      Schema.Struct({
        Instances: Schema.optional(
          Schema.Array(Schema.Struct({ InstanceId: Schema.String, State: Schema.Struct({ Name: Schema.String }) }))
        )
      })
    )
  ),
  NextToken: Schema.optional(Schema.String)
})

const Attribute = Schema.Struct({
  UserData: Schema.optional(Schema.Struct({ Value: Schema.optional(Schema.String) })),
  InstanceInitiatedShutdownBehavior: Schema.optional(Schema.Struct({ Value: Schema.optional(Schema.String) }))
})

interface Tracked {
  readonly instanceId: string
  readonly region: string
  readonly paths: SandboxPaths
  status: HarnessInstance["status"]
  sandbox: ChildProcess | null
  requests: Array<string>
  poweredOff: "terminate" | "stop" | null
}

const gzipMagic = (data: Buffer): boolean => data.length > 2 && data[0] === 0x1f && data[1] === 0x8b

/** cloud-init accepts user-data gzipped or not; EC2 hands it out base64-encoded. */
export const decodeUserData = (base64: string): Buffer => {
  const raw = Buffer.from(base64, "base64")
  return gzipMagic(raw) ? gunzipSync(raw) : raw
}

const endSandbox = (tracked: Tracked): void => {
  const child = tracked.sandbox
  tracked.sandbox = null
  tracked.status = "ended"
  if (child === null) return
  child.stdin?.destroy()
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
}

/**
 * Boots moto's instances: every new instance that has user-data gets a sandbox (pid, mount,
 * uts and ipc namespaces on this machine) that runs the user-data as cloud-init would, so the
 * real agent starts and connects back. When the sandbox asks to power off, the harness does
 * what EC2 does on an instance-initiated shutdown: terminate (or stop, per the instance's
 * shutdown behaviour) in moto. When moto ends an instance, its sandbox ends.
 */
export const startBootHarness = (options: BootHarnessOptions): Effect.Effect<BootHarness, EmulatorError, Scope.Scope> =>
  Effect.gen(function* () {
    if (!canSandbox()) {
      return yield* new EmulatorError({
        message: "the boot harness needs Linux pid and mount namespaces (root, or unprivileged user namespaces) to run user-data safely"
      })
    }
    const log = options.log ?? (() => {})
    mkdirSync(options.workDir, { recursive: true, mode: 0o700 })
    const clients = new Map(
      options.regions.map((region) => [
        region,
        new EC2Client({ region, endpoint: options.endpoint, credentials: motoCredentials, maxAttempts: 2 })
      ])
    )
    const tracked = new Map<string, Tracked>()

    const sdk = <A>(what: string, run: () => Promise<A>) =>
      Effect.tryPromise({ try: run, catch: (cause) => new EmulatorError({ message: `${what}: ${String(cause)}`, cause }) })

    const clientOf = (region: string): EC2Client => {
      const client = clients.get(region)
      if (client === undefined) throw new Error(`no client for ${region}`)
      return client
    }

    const describeAll = (region: string) =>
      Effect.gen(function* () {
        const out: Array<{ readonly InstanceId: string; readonly state: string }> = []
        let token: string | undefined
        do {
          const page = yield* sdk(`DescribeInstances in ${region}`, () =>
            clientOf(region).send(new DescribeInstancesCommand({ MaxResults: 1000, ...(token === undefined ? {} : { NextToken: token }) }))
          ).pipe(Effect.flatMap(Schema.decodeUnknown(Instances)), Effect.mapError((e) => new EmulatorError({ message: e.message, cause: e })))
          for (const r of page.Reservations ?? []) for (const i of r.Instances ?? []) out.push({ InstanceId: i.InstanceId, state: i.State.Name })
          token = page.NextToken === undefined || page.NextToken === "" ? undefined : page.NextToken
        } while (token !== undefined)
        return out
      })

    const attribute = (region: string, instanceId: string, name: "userData" | "instanceInitiatedShutdownBehavior") =>
      sdk(`DescribeInstanceAttribute ${name} of ${instanceId}`, () =>
        clientOf(region).send(new DescribeInstanceAttributeCommand({ InstanceId: instanceId, Attribute: name }))
      ).pipe(Effect.flatMap(Schema.decodeUnknown(Attribute)), Effect.mapError((e) => new EmulatorError({ message: e.message, cause: e })))

    const boot = (region: string, instanceId: string) =>
      Effect.gen(function* () {
        const paths = sandboxPaths(join(options.workDir, instanceId))
        mkdirSync(paths.dir, { recursive: true, mode: 0o700 })
        const entry: Tracked = { instanceId, region, paths, status: "no-user-data", sandbox: null, requests: [], poweredOff: null }
        tracked.set(instanceId, entry)
        const encoded = (yield* attribute(region, instanceId, "userData")).UserData?.Value
        if (encoded === undefined || encoded === "") {
          log(`${instanceId} (${region}): no user-data, nothing to boot`)
          return
        }
        const child = startSandbox({ paths, hostname: instanceId, userData: decodeUserData(encoded) })
        entry.sandbox = child
        entry.status = "booted"
        child.once("exit", (code, signal) => {
          if (entry.sandbox === child) {
            entry.sandbox = null
            entry.status = "ended"
            log(`${instanceId}: sandbox ended on its own (${signal ?? code}); see ${paths.init}`)
          }
        })
        log(`${instanceId} (${region}): booted in ${paths.dir}`)
      })

    /** An instance-initiated shutdown, as EC2 handles it: per the instance's shutdown behaviour. */
    const powerOff = (entry: Tracked) =>
      Effect.gen(function* () {
        const behaviour = (yield* attribute(entry.region, entry.instanceId, "instanceInitiatedShutdownBehavior"))
          .InstanceInitiatedShutdownBehavior?.Value
        const action = behaviour === "terminate" ? "terminate" : "stop"
        yield* sdk(`${action} ${entry.instanceId}`, () =>
          action === "terminate"
            ? clientOf(entry.region).send(new TerminateInstancesCommand({ InstanceIds: [entry.instanceId] }))
            : clientOf(entry.region).send(new StopInstancesCommand({ InstanceIds: [entry.instanceId] }))
        )
        // Only once moto has it: a failed call is retried on the next tick.
        entry.poweredOff = action
        endSandbox(entry)
        log(`${entry.instanceId}: powered off (${entry.requests.at(-1) ?? ""}) → ${action} in moto`)
      })

    const readRequests = (entry: Tracked): void => {
      if (existsSync(entry.paths.requests)) entry.requests = readFileSync(entry.paths.requests, "utf8").split("\n").filter((l) => l !== "")
    }

    const tick = Effect.gen(function* () {
      for (const region of options.regions) {
        const instances = yield* describeAll(region)
        const present = new Set<string>()
        for (const instance of instances) {
          present.add(instance.InstanceId)
          const entry = tracked.get(instance.InstanceId)
          const alive = instance.state === "pending" || instance.state === "running"
          if (entry === undefined) {
            if (alive) yield* boot(region, instance.InstanceId)
          } else if (!alive && entry.sandbox !== null) {
            endSandbox(entry)
            log(`${instance.InstanceId}: ${instance.state} in moto, sandbox ended`)
          }
        }
        for (const entry of tracked.values()) {
          if (entry.region === region && entry.sandbox !== null && !present.has(entry.instanceId)) endSandbox(entry)
        }
      }
      for (const entry of tracked.values()) {
        readRequests(entry)
        if (entry.poweredOff === null && entry.requests.length > 0) yield* powerOff(entry)
      }
    })

    const every = Duration.decode(options.pollInterval ?? Duration.millis(150))
    const loop = yield* tick.pipe(
      Effect.catchAll((error) => Effect.sync(() => log(`harness: ${error.message}`))),
      Effect.repeat(Schedule.spaced(every)),
      Effect.forkDaemon
    )
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        yield* Fiber.interrupt(loop)
        for (const entry of tracked.values()) endSandbox(entry)
        for (const client of clients.values()) client.destroy()
      })
    )

    const snapshot = (entry: Tracked): HarnessInstance => ({
      instanceId: entry.instanceId,
      region: entry.region,
      dir: entry.paths.dir,
      status: entry.status,
      powerRequests: [...entry.requests],
      poweredOff: entry.poweredOff
    })

    return {
      instances: Effect.sync(() => [...tracked.values()].map(snapshot)),
      awaitStatus: (instanceId, status, timeout) =>
        Effect.gen(function* () {
          const deadline = Date.now() + Duration.toMillis(Duration.decode(timeout))
          for (;;) {
            const entry = tracked.get(instanceId)
            if (entry !== undefined && entry.status === status) return snapshot(entry)
            if (Date.now() > deadline) {
              return yield* new EmulatorError({
                message: `${instanceId} did not become ${status} (it is ${entry?.status ?? "unknown to the harness"})`
              })
            }
            yield* Effect.sleep(Duration.millis(50))
          }
        })
    }
  })
