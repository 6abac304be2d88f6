import {
  beforeAnythingStarted,
  type Bootstrap,
  describeCause,
  type InstanceRef,
  instanceNameTime,
  isInstanceName,
  type ListHint,
  type ObservedState,
  type ParsedSpec,
  parseInstanceName,
  Provider,
  type ProviderCapabilities,
  type ProviderError,
  type ProviderInstance,
  type ProviderService,
  PROVIDER_SPEC_VERSION,
  type SpawnResult,
  type SpecOptions
} from "@skyrepl/core"
import { Duration, Effect, Either, Layer, Schedule } from "effect"
import { readFileSync, statSync } from "node:fs"
import { type AmiCacheOptions, describeGivenImage, resolveUbuntuImage } from "./ami.ts"
import { type AwsApi, defaultCallRetry, type Instance, makeAwsApi, retryingCall, type StateChange, type Subnet, type Tag, tagValue } from "./aws-api.ts"
import { terminateWhileExiting } from "./exit-termination.ts"
import { AwsError, type ErrorContext, outcomeUnknown, providerError, reasonOf, toProviderError } from "./errors.ts"
import { type AwsProviderOptions, resolveOptions, type ResolvedOptions } from "./options.ts"
import { type RegionSetup, setUpRegion } from "./setup.ts"
import { MANAGED_TAG, makeSnapshots } from "./snapshots.ts"
import { archOfInstanceType, awsSpecOf, defaultInstanceTypes, parseSpec as parseAwsSpec, PROVIDER_ID } from "./spec.ts"
import { buildUserData, USER_DATA_LIMIT } from "./user-data.ts"

export { PROVIDER_ID }

export const CONTROL_ID_TAG = "skyrepl:control-id"
export const EXPIRES_AT_TAG = "skyrepl:expires-at"

/** Instance states that still exist (and may still cost money). */
const LIVE_STATES = ["pending", "running", "stopping", "stopped"] as const

/**
 * The longest an exiting process waits for EC2 to take a termination (`terminateSync`). A
 * termination normally takes well under a second; waiting longer keeps a user's terminal hung on
 * an unreachable endpoint, and the dead-man switch ends the instance anyway.
 */
const EXIT_TERMINATION_LIMIT_MS = 10_000

/**
 * `shutting-down` already counts as gone: the instance cannot come back, and billing stops. A
 * stopped instance still has its disk (and its bill), so it is `stopping` until terminated.
 */
export const observedState = (ec2State: string): ObservedState => {
  switch (ec2State) {
    case "pending":
      return "pending"
    case "running":
      return "running"
    case "stopping":
    case "stopped":
      return "stopping"
    default:
      return "gone"
  }
}

const loopbackHost = /^(localhost|.*\.localhost|127(\.[0-9]+){3}|0\.0\.0\.0|\[::1?\]|\[::ffff:127(\.[0-9]+){3}\]|\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\])$/i

/** Whether a VM somewhere else could never reach this URL: it names the controller's own loopback. */
export const isLoopbackUrl = (url: string): boolean => {
  if (!URL.canParse(url)) return false
  return loopbackHost.test(new URL(url).hostname)
}

/** An instance a search for a ref found, and whether by the ref's id (else by its name tag). */
interface Located {
  readonly instance: Instance
  readonly region: string
  readonly byId: boolean
}

/** What this process knows about a name it launched, so retries and look-ups stay truthful. */
interface LaunchState {
  readonly region: string
  /** Bumped whenever an earlier token's outcome is settled as "no instance", so a retry gets a fresh token. */
  generation: number
  /** RunInstances was sent at least once, so every further attempt must look for the instance first. */
  tried: boolean
  /** The instance EC2 gave us, once it did. */
  instanceId: string | null
  /** Since when a RunInstances whose outcome we do not know may have created an instance we cannot see yet. */
  uncertainSince: number | null
  /**
   * A RunInstances was sent after an earlier one whose outcome stayed unknown (nothing by that
   * name was visible yet): two instances may carry the name, so only a search by name is
   * complete. While false, the instance this process got is the only one.
   */
  twinPossible: boolean
  capacity: Schedule.ScheduleDriver<unknown, unknown, never> | null
  /**
   * The subnet the next RunInstances names, once EC2 refused one for capacity: each retry after
   * such a refusal goes to the next availability zone's default subnet. Null before any refusal
   * (EC2 then picks the zone), and when the region's default subnets are not known.
   */
  subnetId: string | null
  /** How many capacity refusals this launch had: which zone comes next. */
  capacityRefusals: number
}

/** Builds the provider. Cheap: no SDK import, no network; AWS is first touched by a call that needs it. */
export const make = (options: AwsProviderOptions = {}): Effect.Effect<ProviderService> =>
  Effect.gen(function* () {
    const resolved: ResolvedOptions = yield* resolveOptions(options)
    const callRetry = resolved.callRetry ?? defaultCallRetry
    const api: AwsApi = makeAwsApi({
      endpoint: resolved.endpoint,
      profile: resolved.profile,
      credentials: resolved.credentials,
      requestTimeout: resolved.requestTimeout,
      callRetry
    })
    const capacitySchedule: Schedule.Schedule<unknown, unknown> =
      resolved.capacityRetry ??
      Schedule.spaced(resolved.capacityBackoff).pipe(Schedule.intersect(Schedule.recurs(Math.max(0, resolved.capacityRetries))))
    const visibilityMs = Duration.toMillis(resolved.visibilityTimeout)
    const managedTags: ReadonlyArray<Tag> = [{ key: MANAGED_TAG, value: "true" }]

    const capabilities: ProviderCapabilities = {
      isolation: "vm",
      spot: true,
      snapshots: true,
      regions: true,
      warmPool: false,
      ssh: true
    }

    /** Regions this process launched in; a later `list` scans them too. */
    const usedRegions = new Set<string>()
    const launches = new Map<string, LaunchState>()
    /** AMI look-ups this provider has read or made (see `AmiCacheOptions.memo`). */
    const amiMemo: NonNullable<AmiCacheOptions["memo"]> = new Map()
    /**
     * Instance ids this process got from RunInstances. Until DescribeInstances has shown one
     * (`seen`), "not found" means "not visible yet", for `visibilityTimeout` after `since`.
     */
    const launched = new Map<string, { since: number; seen: boolean }>()
    const setups = new Map<string, RegionSetup>()
    const setupLock = yield* Effect.makeSemaphore(1)

    const ready = (operation: string): Effect.Effect<void, ProviderError> =>
      resolved.problems.length === 0
        ? Effect.void
        : providerError(operation, "invalid-request", resolved.problems.map((p) => p.message).join("; "))

    const defaultRegion = (operation: string): Effect.Effect<string, ProviderError> =>
      resolved.region !== null
        ? Effect.succeed(resolved.region)
        : providerError(
            operation,
            "unavailable",
            "no AWS region is configured: set AWS_REGION or region in ~/.aws/config, or give a region (repl run and repl snapshot delete take --region)"
          )

    /** The regions the settings name: the default one and `regions`. */
    const configuredRegions: ReadonlyArray<string> = [...(resolved.region === null ? [] : [resolved.region]), ...resolved.regions]

    const scanRegions = (operation: string, hint: ReadonlyArray<string> = []): Effect.Effect<ReadonlyArray<string>, ProviderError> => {
      const all = [...new Set([...configuredRegions, ...hint, ...usedRegions])]
      return all.length > 0 ? Effect.succeed(all) : Effect.flatMap(defaultRegion(operation), (r) => Effect.succeed([r]))
    }

    const requireName = (operation: string, name: string) =>
      isInstanceName(name) ? Effect.void : providerError(operation, "invalid-request", `"${name}" is not a SkyREPL instance name`)

    const describeCredentials = (region: string): Effect.Effect<string> =>
      Effect.map(api.accessKeyId(region), (key) => {
        const masked = key === null ? "no access key found" : `access key ${key.slice(0, 4)}…${key.slice(-4)}`
        // The SDK's own order: a profile, once named, wins over the access-key variables.
        const source =
          resolved.credentials !== null
            ? "the credentials given in code"
            : resolved.profile !== null
              ? process.env["AWS_ACCESS_KEY_ID"] !== undefined
                ? `profile "${resolved.profile}", which the AWS SDK uses over AWS_ACCESS_KEY_ID (also set; unset AWS_PROFILE to use the keys)`
                : `profile "${resolved.profile}"`
              : process.env["AWS_ACCESS_KEY_ID"] !== undefined
                ? "AWS_ACCESS_KEY_ID in the environment"
                : `the default credential chain (profile "default", SSO, instance metadata)`
        return `${source} (${masked})`
      })

    const setupFor = (region: string): Effect.Effect<RegionSetup, ProviderError> =>
      Effect.suspend(() => {
        // Set up once per region: after that, no lock to take.
        const done = setups.get(region)
        return done !== undefined ? Effect.succeed(done) : setUpOnce(region)
      })

    const setUpOnce = (region: string): Effect.Effect<RegionSetup, ProviderError> =>
      setupLock.withPermits(1)(
        Effect.suspend(() => {
          const done = setups.get(region)
          if (done !== undefined) return Effect.succeed(done)
          return setUpRegion(api, { home: resolved.home, endpoint: resolved.endpoint, managedTags, describeCredentials }, region).pipe(
            Effect.tap((setup) => Effect.sync(() => setups.set(region, setup)))
          )
        })
      )

    const isYoung = (at: number): boolean => Date.now() - at < visibilityMs

    // -----------------------------------------------------------------------------------------
    // Finding instances

    /**
     * Instances tagged with `name` in `region`, oldest first: live ones only, or (`ended`) those
     * shutting down or terminated too, which EC2 goes on showing for a while.
     */
    const findByName = (region: string, name: string, ended = false): Effect.Effect<ReadonlyArray<Instance>, AwsError> =>
      api
        .describeInstances(region, {
          filters: [{ name: "tag:Name", values: [name] }, ...(ended ? [] : [{ name: "instance-state-name", values: LIVE_STATES }])]
        })
        .pipe(
          Effect.map(({ instances }) =>
            [...instances].sort((a, b) => (a.LaunchTime?.getTime() ?? 0) - (b.LaunchTime?.getTime() ?? 0) || a.InstanceId.localeCompare(b.InstanceId))
          )
        )

    /** One instance by id; null when EC2 does not know it (or not yet). */
    const byId = (region: string, instanceId: string): Effect.Effect<Instance | null, AwsError> =>
      api.describeInstances(region, { instanceIds: [instanceId] }).pipe(
        Effect.map(({ instances }) => {
          const found = instances.find((i) => i.InstanceId === instanceId) ?? null
          const mine = launched.get(instanceId)
          if (found !== null && mine !== undefined) mine.seen = true
          return found
        }),
        Effect.catchIf(
          (e) => e.code === "InvalidInstanceID.NotFound" || e.code === "InvalidInstanceID.Malformed",
          () => Effect.succeed(null)
        )
      )

    /** The regions a ref may be in: its own, else every region this provider scans. */
    const regionsOf = (ref: InstanceRef, operation: string) =>
      ref.region !== null ? Effect.succeed([ref.region]) : scanRegions(operation)

    /** The instance id this process knows for a ref: given, or from its own launch. */
    const knownId = (ref: InstanceRef): string | null => ref.providerRef ?? launches.get(ref.name)?.instanceId ?? null

    /**
     * The instance and region of a ref when this process launched it and knows no other
     * instance can carry its name: then the id alone answers describe and terminate, with no
     * search by name. Anything else (another process's instance, a launch whose outcome was once
     * unknown, a ref without an id) takes the complete search.
     */
    const onlyInstance = (ref: InstanceRef): { readonly id: string; readonly region: string } | null => {
      const state = launches.get(ref.name)
      if (state === undefined || state.twinPossible || state.instanceId === null) return null
      if (ref.providerRef !== null && ref.providerRef !== state.instanceId) return null
      if (ref.region !== null && ref.region !== state.region) return null
      return { id: state.instanceId, region: state.region }
    }

    /**
     * Once `describe` has said gone, this process stops vouching for the name: a later call (a
     * reaper's, a repeated terminate) takes the complete search, and the launch's state is freed.
     */
    /** Names this process has spawned, the most recent few thousand (see `mayBeInvisible`). */
    const spawnedHere = new Set<string>()
    const spawnedBy = (name: string): void => {
      spawnedHere.add(name)
      if (spawnedHere.size > 4096) spawnedHere.delete(spawnedHere.values().next().value ?? name)
    }

    /**
     * Ids whose TerminateInstances, sent by this process, answered that the instance is ending
     * (shutting-down or terminated): a state EC2 never leaves. A describe that cannot ask EC2
     * afterwards (DescribeInstances throttled or failing while TerminateInstances worked) still
     * has that answer; without it, the engine's wait for "gone" held `repl run` for minutes
     * after the instance had ended, and then reported it as perhaps still running.
     */
    const endedHere = new Set<string>()
    const noteEnding = (changes: ReadonlyArray<StateChange>): Effect.Effect<void> =>
      Effect.sync(() => {
        for (const change of changes) {
          if (observedState(change.CurrentState.Name) !== "gone") continue
          endedHere.add(change.InstanceId)
          if (endedHere.size > 4096) endedHere.delete(endedHere.values().next().value ?? change.InstanceId)
        }
      })

    /**
     * Whether what a search found shows that EC2 shows the instance, so that finding nothing
     * live is not "not visible yet": the instance of the known id, in any state, or one of the
     * name that this process's own TerminateInstances ended. Without the latter, a reaper that
     * ended a killed launch's instance waited out the whole visibility window (a minute, holding
     * even `repl run list`) before recording it terminated. An ended instance of the name that
     * this process did not end (one that died at launch, whose retry may not show yet) proves
     * nothing.
     */
    const showsInstance = (found: ReadonlyArray<Located>): boolean =>
      found.some((f) => f.byId || endedHere.has(f.instance.InstanceId))

    const forget = (name: string): void => {
      const id = launches.get(name)?.instanceId
      if (id !== null && id !== undefined) {
        launched.delete(id)
        endedHere.delete(id)
      }
      launches.delete(name)
    }

    /**
     * Whether an instance of this name may exist that EC2 does not show yet. For a name this
     * process spawned, what it saw of its own RunInstances says. For any other (a reaper taking
     * over a dead owner's instance, perhaps killed mid-RunInstances), all it knows is when the
     * launch began, from the name: until `visibilityTimeout` after that, "not found" may be
     * "not yet", and taking it for gone would leak whatever appears later.
     */
    const mayBeInvisible = (ref: InstanceRef): boolean => {
      const id = knownId(ref)
      const mine = id === null ? undefined : launched.get(id)
      if (mine !== undefined && !mine.seen && isYoung(mine.since)) return true
      const uncertain = launches.get(ref.name)?.uncertainSince ?? null
      if (uncertain !== null && isYoung(uncertain)) return true
      if (spawnedHere.has(ref.name)) return false
      const born = instanceNameTime(ref.name)
      return born !== undefined && isYoung(born)
    }

    const notVisibleYet = (operation: string, ref: InstanceRef) =>
      providerError(operation, "transient", `${ref.name} was just created and is not visible to DescribeInstances yet`)

    /** Every instance that is `ref`, across its candidate regions (normally one): live, or found by id or ended. */
    const locateAll = (ref: InstanceRef, operation: string) =>
      Effect.gen(function* () {
        const regions = yield* regionsOf(ref, operation)
        const id = knownId(ref)
        const found: Array<Located> = []
        for (const region of regions) {
          const seen = new Set<string>()
          if (id !== null) {
            const instance = yield* byId(region, id).pipe(Effect.mapError((e) => toProviderError(e)))
            if (instance !== null) {
              seen.add(instance.InstanceId)
              found.push({ instance, region, byId: true })
            }
          }
          // Ended ones too: one this process terminated, seen again, shows the name is visible (see `showsInstance`).
          const named = yield* findByName(region, ref.name, true).pipe(Effect.mapError((e) => toProviderError(e)))
          for (const instance of named) if (!seen.has(instance.InstanceId)) found.push({ instance, region, byId: false })
          // A name is one launch's, in one region: the search ends where it is, not where it ended.
          if (found.some((f) => f.byId || observedState(f.instance.State.Name) !== "gone")) break
        }
        return found
      })

    // -----------------------------------------------------------------------------------------
    // Spawn

    const checkReachable = (bootstrap: Bootstrap): Effect.Effect<void, ProviderError> => {
      if (resolved.endpoint !== null || !isLoopbackUrl(bootstrap.agentUrl)) return Effect.void
      return providerError(
        "spawn",
        "invalid-request",
        `the agent on an EC2 instance must call back to ${bootstrap.agentUrl}, but that is this machine's loopback, which ` +
          `no VM can reach; nothing was launched. Set SKYREPL_HUB_HOST=0.0.0.0 and SKYREPL_CONTROL_PLANE_URL=http://ADDRESS:PORT ` +
          `with an address the VM can reach (a public IP with the port open, a VPN, or a tunnel) and SKYREPL_HUB_PORT=PORT ` +
          `(see docs/providers/aws.md).`
      )
    }

    /**
     * The agent's source, read again only when its file changed (size or modification time):
     * a launch then costs a stat, not a 50 KB read and decode, and the unchanged text is the
     * same string, which the user-data's cached install step recognises at once.
     */
    let agentCache: { readonly path: string; readonly size: number; readonly mtimeMs: number; readonly source: string } | null = null
    const readAgent = (path: string): Effect.Effect<string, ProviderError> =>
      Effect.try({
        try: () => {
          const info = statSync(path)
          if (agentCache !== null && agentCache.path === path && agentCache.size === info.size && agentCache.mtimeMs === info.mtimeMs) {
            return agentCache.source
          }
          const source = readFileSync(path, "utf8")
          agentCache = { path, size: info.size, mtimeMs: info.mtimeMs, source }
          return source
        },
        catch: (cause) => providerError("spawn", "unavailable", `cannot read the agent script ${path}: ${describeCause(cause)}`, cause)
      })

    /** An instance that died on its way up: its state reason, as the error RunInstances would have given. */
    const deathOf = (instance: Instance, region: string): AwsError => {
      const raw = instance.StateReason?.Code ?? "Server.InternalError"
      const bare = raw.replace(/^(Server|Client)\./, "")
      const code = bare === "SpotInstanceTermination" ? "InsufficientInstanceCapacity" : bare
      return new AwsError({
        operation: "RunInstances",
        code,
        message: `${instance.InstanceId} was ${instance.State.Name} right after launch: ${instance.StateReason?.Message ?? raw}`,
        region,
        httpStatus: null,
        requestId: null
      })
    }

    /** Terminates every instance but the oldest: a duplicate must never be left running. */
    const keepOldest = (region: string, instances: ReadonlyArray<Instance>): Effect.Effect<Instance | null, AwsError> =>
      Effect.gen(function* () {
        const [first, ...extra] = instances
        if (extra.length > 0) yield* api.terminateInstances(region, extra.map((i) => i.InstanceId)).pipe(Effect.tap(noteEnding))
        return first ?? null
      })

    /**
     * The region's default subnets, looked up on a launch's first capacity refusal (most launches
     * never see one) and kept. When they cannot be listed (no ec2:DescribeSubnets, say), retries
     * go without a subnet, as EC2 picks the zone: the shortage is still waited out, only not
     * spread; the failure is remembered so it is not asked again.
     */
    const subnets = new Map<string, ReadonlyArray<Subnet>>()
    const subnetsOf = (region: string): Effect.Effect<ReadonlyArray<Subnet>> =>
      Effect.suspend(() => {
        const known = subnets.get(region)
        if (known !== undefined) return Effect.succeed(known)
        return api.defaultSubnets(region).pipe(
          Effect.tapError((e) => Effect.logWarning(`listing the default subnets of ${region} failed (${e.message}); capacity retries stay in the zone EC2 picks`)),
          Effect.orElseSucceed((): ReadonlyArray<Subnet> => []),
          Effect.tap((found) => Effect.sync(() => subnets.set(region, found)))
        )
      })

    /**
     * RunInstances at most once per outcome we cannot rule out. Every attempt after the first
     * looks for the instance by its Name tag before launching: a response lost to a time-out or a
     * 5xx may hide an instance that exists, and ClientToken alone is not enough (moto ignores it;
     * AWS forgets it after a while).
     */
    const launch = (
      name: string,
      region: string,
      input: (clientToken: string, subnetId: string | null) => Parameters<AwsApi["runInstance"]>[1]
    ): Effect.Effect<Instance, AwsError> =>
      Effect.gen(function* () {
        const state: LaunchState = launches.get(name) ?? {
          region,
          generation: 0,
          tried: false,
          instanceId: null,
          uncertainSince: null,
          twinPossible: false,
          capacity: null,
          subnetId: null,
          capacityRefusals: 0
        }
        launches.set(name, state)

        const attempt: Effect.Effect<Instance, AwsError> = Effect.gen(function* () {
          if (state.tried) {
            const existing = yield* keepOldest(region, yield* findByName(region, name))
            if (existing !== null) {
              state.uncertainSince = null
              state.instanceId = existing.InstanceId
              return existing
            }
            // The earlier attempt may still have made an instance EC2 does not show yet.
            if (state.uncertainSince !== null) state.twinPossible = true
          }
          state.tried = true
          state.uncertainSince = Date.now()
          const token = state.generation === 0 ? name : `${name}.${state.generation}`
          const instance = yield* api.runInstance(region, input(token, state.subnetId)).pipe(
            Effect.tapError((error) =>
              Effect.sync(() => {
                // Only a transient failure (a 5xx, a lost connection, a time-out) or a success
                // that could not be read (a 2xx cut short, an answer that does not decode) leaves
                // open whether EC2 created the instance; every other answer is a refusal.
                if (!outcomeUnknown(error)) {
                  state.uncertainSince = null
                  state.generation += 1
                }
              })
            )
          )
          state.uncertainSince = null
          // RunInstances' answer names the instance and its state: no DescribeInstances is needed
          // to wait for it. Until DescribeInstances shows it, describe says pending and terminate
          // retries (see `mayBeInvisible`); the engine's boot time-out bounds the rest.
          const observed = observedState(instance.State.Name)
          if (observed !== "pending" && observed !== "running") {
            // It died at launch; its token is spent on a dead instance.
            state.generation += 1
            return yield* deathOf(instance, region)
          }
          state.instanceId = instance.InstanceId
          launched.set(instance.InstanceId, { since: Date.now(), seen: false })
          return instance
        })

        const retried = retryingCall(attempt, callRetry)

        // The back-off's driver is made on the first capacity error: most launches never see one.
        const capacityDriver = Effect.suspend(() =>
          state.capacity !== null
            ? Effect.succeed(state.capacity)
            : Effect.tap(Schedule.driver(capacitySchedule), (driver) => Effect.sync(() => (state.capacity = driver)))
        )
        // A capacity shortage is usually one availability zone's: each retry after one asks for
        // the next zone's default subnet, so the retries are spread over the region.
        const nextZone = Effect.gen(function* () {
          state.capacityRefusals += 1
          const subnets = yield* subnetsOf(region)
          state.subnetId = subnets.length === 0 ? null : subnets[(state.capacityRefusals - 1) % subnets.length]!.subnetId
        })
        const withCapacityBackoff = (): Effect.Effect<Instance, AwsError> =>
          retried.pipe(
            Effect.catchIf(
              (e) => reasonOf(e) === "capacity",
              (e) =>
                Effect.flatMap(capacityDriver, (driver) => driver.next(e)).pipe(
                  Effect.matchEffect({
                    onFailure: () => Effect.fail(e),
                    onSuccess: () => Effect.zipRight(nextZone, withCapacityBackoff())
                  })
                )
            )
          )
        return yield* withCapacityBackoff()
      })

    /** Everything `spawn` does before its RunInstances: checks, the region's set-up, the image. */
    const prepare = (name: string, spec: ParsedSpec, bootstrap: Bootstrap) =>
      Effect.gen(function* () {
        yield* ready("spawn")
        yield* requireName("spawn", name)
        const aws = awsSpecOf(spec)
        if (spec.provider !== PROVIDER_ID || aws === null) {
          return yield* providerError("spawn", "invalid-request", `the spec "${spec.canonical}" was not parsed by the aws provider`)
        }
        const region = aws.region ?? (yield* defaultRegion("RunInstances"))
        yield* checkReachable(bootstrap)
        const agentSource = yield* readAgent(bootstrap.agentScript)
        const created = Date.now()
        const lifetime = Duration.toMillis(resolved.maxLifetime)
        const userData = yield* Effect.tryPromise({
          try: () => buildUserData({ name, bootstrap, agentSource, maxLifetimeSeconds: lifetime / 1000 }),
          catch: (cause) => providerError("spawn", "internal", `cannot compress the bootstrap: ${describeCause(cause)}`, cause)
        })
        if (userData.bytes > USER_DATA_LIMIT) {
          return yield* providerError(
            "spawn",
            "internal",
            `the bootstrap is ${userData.bytes} bytes gzipped, above EC2's 16 KB user-data limit; the agent grew too large`
          )
        }
        usedRegions.add(region)
        const setup = yield* setupFor(region)
        const image =
          aws.image.kind === "ubuntu"
            ? {
                ...(yield* resolveUbuntuImage(
                  api,
                  { cacheDir: resolved.cacheDir, ttl: resolved.amiCacheTtl, endpoint: resolved.endpoint, memo: amiMemo },
                  region,
                  aws.image.version,
                  aws.image.arch
                )),
                arch: aws.image.arch
              }
            : yield* describeGivenImage(api, region, aws.image.imageId)
        const instanceType = aws.instanceType ?? defaultInstanceTypes[image.arch]
        const typeArch = archOfInstanceType(instanceType)
        if (typeArch !== image.arch) {
          return yield* providerError(
            "RunInstances",
            "invalid-request",
            `the image ${image.imageId} is ${image.arch} but ${instanceType} is ${typeArch ?? "not a type SkyREPL knows"}; pick a type of the image's architecture`
          )
        }
        const controlId = Either.match(parseInstanceName(name), { onLeft: () => "", onRight: (p) => p.controlId })
        const tags: ReadonlyArray<Tag> = [
          { key: "Name", value: name },
          { key: MANAGED_TAG, value: "true" },
          { key: CONTROL_ID_TAG, value: controlId },
          { key: EXPIRES_AT_TAG, value: new Date(created + lifetime).toISOString() }
        ]
        const sdkTags = tags.map((t) => ({ Key: t.key, Value: t.value }))
        return { region, setup, image, instanceType, aws, sdkTags, userData }
      })

    /**
     * A failure of `spawn` before its RunInstances is one that started nothing, unless an earlier
     * try of the same spawn sent a RunInstances (it may have made an instance).
     */
    const beforeRunInstances = <A>(name: string, step: Effect.Effect<A, ProviderError>): Effect.Effect<A, ProviderError> =>
      launches.get(name)?.tried === true ? step : beforeAnythingStarted(step)

    const spawn = (name: string, spec: ParsedSpec, bootstrap: Bootstrap): Effect.Effect<SpawnResult, ProviderError> =>
      Effect.gen(function* () {
        spawnedBy(name)
        const prepared = yield* beforeRunInstances(name, prepare(name, spec, bootstrap))
        const { region, setup, image, instanceType, aws, sdkTags, userData } = prepared
        const context: ErrorContext = { identity: setup.identity.Arn, instanceType, spot: aws.spot }
        const instance = yield* launch(name, region, (clientToken, subnetId) => ({
          ImageId: image.imageId,
          InstanceType: instanceType,
          MinCount: 1,
          MaxCount: 1,
          ClientToken: clientToken,
          KeyName: setup.keyName,
          SecurityGroupIds: [setup.securityGroupId],
          ...(subnetId === null ? {} : { SubnetId: subnetId }),
          UserData: userData.base64,
          // The agent's power-off (dead-man switch, shutdown, its own exit) must end the bill.
          InstanceInitiatedShutdownBehavior: "terminate",
          MetadataOptions: { HttpTokens: "required", HttpEndpoint: "enabled" },
          TagSpecifications: [
            { ResourceType: "instance", Tags: sdkTags },
            { ResourceType: "volume", Tags: sdkTags.filter((t) => t.Key !== EXPIRES_AT_TAG) }
          ],
          ...(aws.spot
            ? { InstanceMarketOptions: { MarketType: "spot", SpotOptions: { SpotInstanceType: "one-time", InstanceInterruptionBehavior: "terminate" } } }
            : {})
        })).pipe(Effect.mapError((e) => toProviderError(e, context)))
        return { providerRef: instance.InstanceId, region }
      })

    // -----------------------------------------------------------------------------------------
    // Describe, list, terminate

    const describe = (ref: InstanceRef): Effect.Effect<ObservedState, ProviderError> =>
      Effect.gen(function* () {
        yield* ready("describe")
        yield* requireName("describe", ref.name)
        let state: ObservedState
        const only = onlyInstance(ref)
        if (only !== null) {
          const asked = byId(only.region, only.id).pipe(
            Effect.map((instance): ObservedState =>
              instance !== null ? observedState(instance.State.Name) : mayBeInvisible(ref) ? "pending" : "gone"
            ),
            Effect.mapError((e) => toProviderError(e))
          )
          // Only the id is in question here (`onlyInstance`), and EC2 already said it is ending.
          state = yield* endedHere.has(only.id) ? Effect.orElseSucceed(asked, (): ObservedState => "gone") : asked
        } else {
          const found = yield* locateAll(ref, "DescribeInstances")
          const states = found.map((f) => observedState(f.instance.State.Name))
          const live = (["running", "pending", "stopping"] as const).find((wanted) => states.includes(wanted))
          state = live ?? (!showsInstance(found) && mayBeInvisible(ref) ? "pending" : "gone")
        }
        if (state === "gone") forget(ref.name)
        return state
      })

    const listRegion = (region: string): Effect.Effect<ReadonlyArray<ProviderInstance>, ProviderError> =>
      Effect.gen(function* () {
        const out: Array<ProviderInstance> = []
        let nextToken: string | null = null
        do {
          const page: { readonly instances: ReadonlyArray<Instance>; readonly nextToken: string | null } = yield* api
            .describeInstances(region, {
              filters: [
                { name: `tag:${MANAGED_TAG}`, values: ["true"] },
                { name: "instance-state-name", values: LIVE_STATES }
              ],
              maxResults: resolved.pageSize,
              ...(nextToken === null ? {} : { nextToken })
            })
            .pipe(Effect.mapError((e) => toProviderError(e)))
          for (const instance of page.instances) {
            const name = tagValue(instance.Tags, "Name")
            const state = observedState(instance.State.Name)
            // A tag anyone could copy is not enough: the name must be one SkyREPL writes.
            if (name === undefined || !isInstanceName(name) || state === "gone") continue
            out.push({
              name,
              providerRef: instance.InstanceId,
              region,
              state,
              createdAt: instance.LaunchTime === undefined ? null : instance.LaunchTime.getTime()
            })
          }
          nextToken = page.nextToken
        } while (nextToken !== null)
        return out
      })

    /**
     * A region that no instance can be in: its name does not resolve (a misspelt region a launch
     * once named), or the account has not enabled it (EC2 refuses every call there). Asked only
     * for a region the caller hinted at (the store's records) or a launch here named; the
     * regions configured fail as they are.
     */
    const holdsNothing = (error: ProviderError): boolean => {
      const code = error.cause instanceof AwsError ? error.cause.code : null
      return code === "ENOTFOUND" || code === "OptInRequired"
    }

    const list = (hint?: ListHint): Effect.Effect<ReadonlyArray<ProviderInstance>, ProviderError> =>
      Effect.gen(function* () {
        yield* ready("list")
        const regions = yield* scanRegions("DescribeInstances", hint?.regions ?? [])
        const configured = new Set(configuredRegions)
        const perRegion = yield* Effect.forEach(
          regions,
          (region) =>
            configured.has(region)
              ? listRegion(region)
              : listRegion(region).pipe(
                  Effect.catchIf(holdsNothing, (error) =>
                    Effect.as(Effect.logWarning(`skipped region ${region}, which can hold no instance: ${error.message}`), [])
                  )
                ),
          { concurrency: 4 }
        )
        return perRegion.flat().sort((a, b) => a.name.localeCompare(b.name))
      })

    /**
     * TerminateInstances on the id alone, when it is all there is (`onlyInstance`): its answer
     * says what became of the instance, so nothing is looked up before or after. True when the
     * instance is ending or EC2 no longer knows it; false when the answer is not conclusive, and
     * the complete search has to decide.
     */
    const terminateOnly = (ref: InstanceRef, only: { readonly id: string; readonly region: string }): Effect.Effect<boolean, ProviderError> =>
      api.terminateInstances(only.region, [only.id]).pipe(
        Effect.map((changes): boolean | null =>
          changes.some((c) => c.InstanceId === only.id && observedState(c.CurrentState.Name) === "gone")
        ),
        Effect.catchIf(
          (e) => e.code === "InvalidInstanceID.NotFound" || e.code === "InvalidInstanceID.Malformed",
          () => Effect.succeed(null)
        ),
        Effect.mapError((e) => toProviderError(e)),
        Effect.flatMap((ended) => {
          if (ended === true) {
            return Effect.sync(() => {
              launched.delete(only.id)
              endedHere.add(only.id)
            }).pipe(Effect.as(true))
          }
          if (ended === false) return Effect.succeed(false)
          // EC2 does not know the id: long gone, or just created and not visible to it yet.
          return mayBeInvisible(ref) ? notVisibleYet("TerminateInstances", ref) : Effect.succeed(true)
        })
      )

    const terminate = (ref: InstanceRef): Effect.Effect<void, ProviderError> =>
      Effect.gen(function* () {
        yield* ready("terminate")
        yield* requireName("terminate", ref.name)
        const only = onlyInstance(ref)
        if (only !== null && (yield* terminateOnly(ref, only))) return
        const found = yield* locateAll(ref, "TerminateInstances")
        const live = found.filter((f) => observedState(f.instance.State.Name) !== "gone")
        if (live.length === 0) {
          // Nothing to see may only mean "not yet": then terminating would leak what appears later.
          if (!showsInstance(found) && mayBeInvisible(ref)) return yield* notVisibleYet("TerminateInstances", ref)
          launches.delete(ref.name)
          return
        }
        const byRegion = new Map<string, Array<string>>()
        for (const { instance, region } of live) byRegion.set(region, [...(byRegion.get(region) ?? []), instance.InstanceId])
        for (const [region, ids] of byRegion) {
          yield* api.terminateInstances(region, ids).pipe(
            Effect.flatMap(noteEnding),
            Effect.catchIf(
              // Gone between our look-up and the call: that is the outcome we wanted.
              (e) => e.code === "InvalidInstanceID.NotFound",
              () => Effect.void
            ),
            Effect.mapError((e) => toProviderError(e))
          )
          for (const id of ids) launched.delete(id)
        }
        launches.delete(ref.name)
      })

    /**
     * For a process that is exiting (the Promise client's `exit` hook): terminates the instance
     * before returning, through a child process (see exit-termination.ts). When this process
     * launched the instance and knows no other can carry its name (\`onlyInstance\`), its id is
     * enough; otherwise the child also terminates whatever carries the name. Failing, it says so
     * on stderr and returns: the agent's dead-man switch and the next process's reaper are the
     * layers after this one.
     */
    const terminateSync = (ref: InstanceRef): void => {
      if (resolved.problems.length > 0 || !isInstanceName(ref.name)) return
      const region = ref.region ?? launches.get(ref.name)?.region ?? resolved.region
      if (region === null) return
      const id = knownId(ref)
      const failure = terminateWhileExiting(
        {
          region,
          endpoint: resolved.endpoint,
          profile: resolved.profile,
          credentials: resolved.credentials,
          ids: id === null ? [] : [id],
          searchByName: onlyInstance(ref) === null,
          name: ref.name,
          managedTag: MANAGED_TAG,
          mayBeInvisible: mayBeInvisible(ref)
        },
        Math.min(Duration.toMillis(resolved.requestTimeout), EXIT_TERMINATION_LIMIT_MS)
      )
      if (failure !== null) {
        process.stderr.write(`skyrepl: could not terminate ${ref.name} while exiting (${failure}); the agent's dead-man switch ends it later\n`)
      }
    }

    // -----------------------------------------------------------------------------------------
    // Snapshots

    const snapshots = makeSnapshots({
      api,
      managedTags,
      visibilityTimeout: resolved.visibilityTimeout,
      defaultRegion,
      regions: (operation) => Effect.zipRight(ready(operation), scanRegions(operation)),
      locate: (ref, operation) =>
        Effect.gen(function* () {
          yield* ready(operation)
          yield* requireName(operation, ref.name)
          const found = yield* locateAll(ref, operation)
          const live = found.find((f) => observedState(f.instance.State.Name) !== "gone")
          return live === undefined ? null : { instanceId: live.instance.InstanceId, region: live.region }
        })
    })

    return {
      id: PROVIDER_ID,
      specVersion: PROVIDER_SPEC_VERSION,
      capabilities,
      ...(resolved.problems.length === 0 ? {} : { configurationProblem: resolved.problems.map((p) => p.message).join("; ") }),
      parseSpec: (spec: string | undefined, specOptions?: SpecOptions) => parseAwsSpec(spec, specOptions ?? {}, resolved.region),
      spawn,
      describe,
      list,
      terminate,
      terminateSync,
      snapshots
    } satisfies ProviderService
  })

/** The provider as a layer for `SkyRepl.layer({ providers: [...] })`. Never fails: see `make`. */
export const layer = (options: AwsProviderOptions = {}): Layer.Layer<Provider> => Layer.effect(Provider, make(options))
