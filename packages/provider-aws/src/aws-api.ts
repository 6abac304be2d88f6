import type * as Ec2Sdk from "@aws-sdk/client-ec2"
import type * as StsSdk from "@aws-sdk/client-sts"
import type { FetchHttpHandler } from "@smithy/fetch-http-handler"
import { describeCause, describeParseError } from "@skyrepl/core"
import { Duration, Effect, Either, ParseResult, Schedule, Schema } from "effect"
import { AwsError, reasonOf } from "./errors.ts"
import { type AwsCredentials, endpointShown } from "./options.ts"

// ---------------------------------------------------------------------------------------------
// Loading the SDK

type Ec2Module = typeof Ec2Sdk
type StsModule = typeof StsSdk

interface Sdk {
  readonly ec2: Ec2Module
  readonly sts: StsModule
  /** The instance types this SDK names, looked up on every RunInstances. */
  readonly instanceTypes: ReadonlySet<string>
  /** The HTTP handler clients use; null for the SDK's default (node:http). */
  readonly requestHandler: FetchHttpHandler | null
}

const onBun = typeof process.versions["bun"] === "string"

/**
 * On Bun, the SDK's default handler goes through Bun's node:http emulation, which cost about
 * 0.3 ms more per call than Bun's native fetch (measured against a local server answering at
 * once). On Node, node:http is the faster of the two, so it stays.
 */
const loadHandler = (): Promise<FetchHttpHandler | null> =>
  onBun ? import("@smithy/fetch-http-handler").then((m) => new m.FetchHttpHandler()) : Promise.resolve(null)

let loading: Promise<Sdk> | null = null
let loaded: Sdk | null = null

/**
 * The SDK is imported on first use only: `@aws-sdk/client-ec2` costs ~280 ms to import, and
 * the CLI builds every provider for every command, most of which never touch AWS. Once loaded,
 * it is handed out without another asynchronous step.
 */
const loadSdk = (): Effect.Effect<Sdk, AwsError> =>
  loaded !== null ? Effect.succeed(loaded) : Effect.tryPromise({
    try: () => {
      loading ??= Promise.all([import("@aws-sdk/client-ec2"), import("@aws-sdk/client-sts"), loadHandler()]).then(([ec2, sts, requestHandler]) => {
        loaded = { ec2, sts, instanceTypes: new Set(Object.values(ec2._InstanceType)), requestHandler }
        return loaded
      })
      return loading
    },
    catch: (cause) => {
      loading = null
      return new AwsError({
        operation: "load",
        code: "SdkUnavailable",
        message: `cannot load the AWS SDK (@aws-sdk/client-ec2, @aws-sdk/client-sts): ${describeCause(cause)}`,
        region: null,
        httpStatus: null,
        requestId: null,
        cause
      })
    }
  })

// ---------------------------------------------------------------------------------------------
// Errors from the SDK

const field = (value: unknown, key: string): unknown =>
  typeof value === "object" && value !== null ? Reflect.get(value, key) : undefined

const stringField = (value: unknown, key: string): string | null => {
  const v = field(value, key)
  return typeof v === "string" && v !== "" ? v : null
}

/**
 * Reads what the SDK (or Node's network stack) put on a thrown error. `endpoint` is the custom
 * one calls go to, if any: an answer that is no AWS answer then names it.
 */
export const fromSdkError = (operation: string, region: string | null, error: unknown, endpoint: string | null = null): AwsError => {
  const metadata = field(error, "$metadata")
  const status = field(metadata, "httpStatusCode")
  const name = stringField(error, "name")
  // Service errors carry AWS's code in `Code` (EC2) or as `name`; network errors in `code`,
  // under the name of a plain class: `Error` on Node, `TypeError` from Bun's fetch,
  // `DNSException` from Bun's node:http.
  const plainClass = name === null || name === "Error" || name === "TypeError" || name === "DNSException"
  const code =
    stringField(error, "Code") ??
    (plainClass ? null : name) ??
    stringField(error, "code") ??
    (name !== null && name !== "Error" ? name : null) ??
    "UnknownError"
  // The SDK appends to an answer it could not parse a second line telling a programmer to read a
  // hidden field of the error object; nobody at a terminal can, and an error is one line.
  const given = (stringField(error, "message") ?? String(error))
    .replace(/\s*Deserialization error: to see the raw response, inspect the hidden field \{error\}\.\$response on this object\.?/, "")
    .replace(/\s*\n\s*/g, " ")
    .trim()
  // An error whose body is no AWS answer (a proxy's or a captive portal's HTML page) comes from
  // the SDK as "Unknown", and so did its message, or as the XML parser's complaint about the
  // page: the HTTP status is what there is to say. (A success cut short keeps the parser's
  // complaint: there the body was an AWS answer.) A custom endpoint answers so when it is no EC2,
  // or, like moto, for a region it does not know, where AWS's own names fail to resolve
  // (ENOTFOUND); the message names both, the endpoint without its userinfo.
  const failedStatus = typeof status === "number" && (status < 200 || status >= 300)
  const unread =
    (code === "Unknown" || code === "UnknownError") && (given === "" || given === code || (failedStatus && /XML parse error/.test(given)))
  const message = !unread || typeof status !== "number"
    ? given
    : endpoint === null
      ? `HTTP ${status} with a body that is no AWS answer (a proxy's or a network's own page?)`
      : `HTTP ${status} from the endpoint ${endpointShown(endpoint)} with a body that is no AWS answer: check that it is EC2` +
        (region === null ? "" : ` and that it knows region ${region}`)
  return new AwsError({
    operation,
    code,
    message,
    region,
    httpStatus: typeof status === "number" ? status : null,
    requestId: stringField(metadata, "requestId"),
    cause: error
  })
}

const decodeError = (operation: string, region: string, error: ParseResult.ParseError): AwsError =>
  new AwsError({
    operation,
    code: "DecodeError",
    message: `unexpected ${operation} response: ${describeParseError(error)}`,
    region,
    httpStatus: null,
    requestId: null,
    cause: error
  })

// ---------------------------------------------------------------------------------------------
// Responses, decoded at the edge

const Tag = Schema.Struct({ Key: Schema.optional(Schema.String), Value: Schema.optional(Schema.String) })
const Tags = Schema.optional(Schema.Array(Tag))

export const Instance = Schema.Struct({
  InstanceId: Schema.String,
  InstanceType: Schema.optional(Schema.String),
  State: Schema.Struct({ Name: Schema.String }),
  StateReason: Schema.optional(Schema.Struct({ Code: Schema.optional(Schema.String), Message: Schema.optional(Schema.String) })),
  LaunchTime: Schema.optional(Schema.DateFromSelf),
  InstanceLifecycle: Schema.optional(Schema.String),
  PublicIpAddress: Schema.optional(Schema.String),
  PrivateIpAddress: Schema.optional(Schema.String),
  Tags
})
export type Instance = typeof Instance.Type

// EC2 always sends the set (empty when nothing matched), so a success without it is no EC2
// answer: a proxy's or a captive portal's page, which the SDK reads as "nothing there".
const Reservations = Schema.Struct({
  Reservations: Schema.Array(Schema.Struct({ Instances: Schema.optional(Schema.Array(Instance)) })),
  NextToken: Schema.optional(Schema.String)
})

const RunResult = Schema.Struct({ Instances: Schema.NonEmptyArray(Instance) })

const StateChange = Schema.Struct({
  InstanceId: Schema.String,
  CurrentState: Schema.Struct({ Name: Schema.String }),
  PreviousState: Schema.Struct({ Name: Schema.String })
})
/** What TerminateInstances says of each instance: its state before the call and now. */
export type StateChange = typeof StateChange.Type

const TerminateResult = Schema.Struct({ TerminatingInstances: Schema.Array(StateChange) })

export const Image = Schema.Struct({
  ImageId: Schema.String,
  Name: Schema.optional(Schema.String),
  CreationDate: Schema.optional(Schema.String),
  State: Schema.optional(Schema.String),
  OwnerId: Schema.optional(Schema.String),
  Architecture: Schema.optional(Schema.String),
  Tags,
  BlockDeviceMappings: Schema.optional(
    Schema.Array(Schema.Struct({ Ebs: Schema.optional(Schema.Struct({ SnapshotId: Schema.optional(Schema.String) })) }))
  )
})
export type Image = typeof Image.Type

const Images = Schema.Struct({ Images: Schema.optional(Schema.Array(Image)), NextToken: Schema.optional(Schema.String) })

/** An EBS snapshot (`snap-…`), as DescribeSnapshots gives it. */
export const EbsSnapshot = Schema.Struct({
  SnapshotId: Schema.String,
  State: Schema.optional(Schema.String),
  StartTime: Schema.optional(Schema.DateFromSelf),
  Tags
})
export type EbsSnapshot = typeof EbsSnapshot.Type

// Like Reservations: EC2 always sends the set, so a success without it is no EC2 answer.
const EbsSnapshots = Schema.Struct({ Snapshots: Schema.Array(EbsSnapshot), NextToken: Schema.optional(Schema.String) })

const Identity = Schema.Struct({ Account: Schema.String, Arn: Schema.String, UserId: Schema.optional(Schema.String) })
export type Identity = typeof Identity.Type

const Vpcs = Schema.Struct({ Vpcs: Schema.optional(Schema.Array(Schema.Struct({ VpcId: Schema.String }))) })

const Subnets = Schema.Struct({
  Subnets: Schema.optional(Schema.Array(Schema.Struct({ SubnetId: Schema.String, AvailabilityZone: Schema.String })))
})

/** A default subnet: the one EC2 uses in its availability zone when a launch names none. */
export interface Subnet {
  readonly subnetId: string
  readonly availabilityZone: string
}

const SecurityGroups = Schema.Struct({
  SecurityGroups: Schema.optional(Schema.Array(Schema.Struct({ GroupId: Schema.String, GroupName: Schema.optional(Schema.String) })))
})

const CreatedGroup = Schema.Struct({ GroupId: Schema.String })

const KeyPairs = Schema.Struct({ KeyPairs: Schema.optional(Schema.Array(Schema.Struct({ KeyName: Schema.optional(Schema.String), Tags }))) })

const CreatedKeyPair = Schema.Struct({ KeyName: Schema.String, KeyMaterial: Schema.String })

const CreatedImage = Schema.Struct({ ImageId: Schema.String })

/** The value of a tag on a decoded resource. */
export const tagValue = (tags: ReadonlyArray<typeof Tag.Type> | undefined, key: string): string | undefined =>
  tags?.find((t) => t.Key === key)?.Value

// ---------------------------------------------------------------------------------------------
// The API

export interface AwsApiConfig {
  readonly endpoint: string | null
  readonly profile: string | null
  readonly credentials: AwsCredentials | null
  readonly requestTimeout: Duration.Duration
  /** Retries of one idempotent call that failed as throttled or transient. */
  readonly callRetry: Schedule.Schedule<unknown, unknown>
}

export const defaultCallRetry: Schedule.Schedule<unknown, unknown> = Schedule.exponential(Duration.millis(200), 2).pipe(
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(4))
)

interface Clients {
  readonly sdk: Sdk
  readonly ec2: Ec2Sdk.EC2Client
  readonly sts: StsSdk.STSClient
}

export interface Tag {
  readonly key: string
  readonly value: string
}

export interface DescribeInstancesQuery {
  readonly instanceIds?: ReadonlyArray<string>
  readonly filters?: ReadonlyArray<{ readonly name: string; readonly values: ReadonlyArray<string> }>
  readonly maxResults?: number
  readonly nextToken?: string
}

/** RunInstances input with the instance type as text: the SDK's closed union lags behind EC2. */
export type RunInstanceInput = Omit<Ec2Sdk.RunInstancesCommandInput, "InstanceType"> & { readonly InstanceType: string }

export interface AwsApi {
  readonly getCallerIdentity: (region: string) => Effect.Effect<Identity, AwsError>
  /** The access key the credential chain resolves to, for messages; null when there is none. */
  readonly accessKeyId: (region: string) => Effect.Effect<string | null>
  readonly defaultVpc: (region: string) => Effect.Effect<string | null, AwsError>
  /** The default subnet of each availability zone of the default VPC, by zone name. */
  readonly defaultSubnets: (region: string) => Effect.Effect<ReadonlyArray<Subnet>, AwsError>
  readonly findSecurityGroup: (region: string, vpcId: string, name: string) => Effect.Effect<string | null, AwsError>
  readonly createSecurityGroup: (
    region: string,
    vpcId: string,
    name: string,
    description: string,
    tags: ReadonlyArray<Tag>
  ) => Effect.Effect<string, AwsError>
  readonly allowSshFromAnywhere: (region: string, groupId: string) => Effect.Effect<void, AwsError>
  /** The key pair's tags when it exists, else null. */
  readonly findKeyPair: (region: string, name: string) => Effect.Effect<ReadonlyArray<typeof Tag.Type> | null, AwsError>
  readonly createKeyPair: (region: string, name: string, tags: ReadonlyArray<Tag>) => Effect.Effect<string, AwsError>
  readonly deleteKeyPair: (region: string, name: string) => Effect.Effect<void, AwsError>
  readonly describeImages: (
    region: string,
    query: {
      readonly owners?: ReadonlyArray<string>
      readonly imageIds?: ReadonlyArray<string>
      readonly filters?: ReadonlyArray<{ readonly name: string; readonly values: ReadonlyArray<string> }>
    }
  ) => Effect.Effect<ReadonlyArray<Image>, AwsError>
  /** Not retried here: a retry must first look for the instance (see the provider's spawn). */
  readonly runInstance: (region: string, input: RunInstanceInput) => Effect.Effect<Instance, AwsError>
  readonly describeInstances: (
    region: string,
    query: DescribeInstancesQuery
  ) => Effect.Effect<{ readonly instances: ReadonlyArray<Instance>; readonly nextToken: string | null }, AwsError>
  readonly terminateInstances: (region: string, ids: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<StateChange>, AwsError>
  readonly createImage: (
    region: string,
    instanceId: string,
    name: string,
    description: string,
    tags: ReadonlyArray<Tag>
  ) => Effect.Effect<string, AwsError>
  readonly deregisterImage: (region: string, imageId: string) => Effect.Effect<void, AwsError>
  /** The account's own EBS snapshots that match every filter, all pages. */
  readonly describeSnapshots: (
    region: string,
    filters: ReadonlyArray<{ readonly name: string; readonly values: ReadonlyArray<string> }>
  ) => Effect.Effect<ReadonlyArray<EbsSnapshot>, AwsError>
  /** Adds (or overwrites) tags on existing resources; idempotent, so retried. */
  readonly createTags: (region: string, resourceIds: ReadonlyArray<string>, tags: ReadonlyArray<Tag>) => Effect.Effect<void, AwsError>
  readonly deleteSnapshot: (region: string, snapshotId: string) => Effect.Effect<void, AwsError>
}

const toSdkTags = (tags: ReadonlyArray<Tag>) => tags.map((t) => ({ Key: t.key, Value: t.value }))

const toSdkFilters = (filters: ReadonlyArray<{ readonly name: string; readonly values: ReadonlyArray<string> }> | undefined) =>
  filters?.map((f) => ({ Name: f.name, Values: [...f.values] }))

// Field by field: an error's message and cause are not enumerable, so a spread drops them.
const markRetried = (error: AwsError): AwsError =>
  new AwsError({
    operation: error.operation,
    code: error.code,
    message: error.message,
    region: error.region,
    httpStatus: error.httpStatus,
    requestId: error.requestId,
    ...(error.cause === undefined ? {} : { cause: error.cause }),
    retried: true
  })

const mayWorkAgain = (error: AwsError): boolean => {
  const reason = reasonOf(error)
  return reason === "throttled" || reason === "transient"
}

/**
 * Retries only what AWS or the network said may work on a second try. What still fails after
 * the schedule is marked `retried`, so the engine does not repeat the whole schedule again.
 */
export const retryingCall = <A>(effect: Effect.Effect<A, AwsError>, schedule: Schedule.Schedule<unknown, unknown>): Effect.Effect<A, AwsError> =>
  Effect.retry(effect, { schedule, while: mayWorkAgain }).pipe(
    Effect.mapError((error) => (mayWorkAgain(error) ? markRetried(error) : error))
  )

/**
 * The SDK's logger. The SDK writes its warnings to the console unless given one, and a library
 * must not print on its own: a multi-line warning lands in the middle of a CLI's one-line error.
 * What such a warning says that matters (a profile that wins over the access-key variables) is
 * in the provider's own messages (`describeCredentials`).
 */
const quietSdkLogger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} }

export const makeAwsApi = (config: AwsApiConfig): AwsApi => {
  const clients = new Map<string, Clients>()

  const clientsFor = (region: string): Effect.Effect<Clients, AwsError> =>
    Effect.map(loadSdk(), (sdk) => {
      const existing = clients.get(region)
      if (existing !== undefined) return existing
      const common = {
        region,
        // Retries are ours (see `retryingCall` and spawn): the SDK's own would repeat a
        // RunInstances that timed out, and emulators ignore ClientToken.
        maxAttempts: 1,
        logger: quietSdkLogger,
        ...(config.endpoint === null ? {} : { endpoint: config.endpoint }),
        ...(config.profile === null ? {} : { profile: config.profile }),
        ...(config.credentials === null ? {} : { credentials: { ...config.credentials } }),
        ...(sdk.requestHandler === null ? {} : { requestHandler: sdk.requestHandler })
      }
      const created: Clients = { sdk, ec2: new sdk.ec2.EC2Client(common), sts: new sdk.sts.STSClient(common) }
      clients.set(region, created)
      return created
    })

  // setTimeout takes a 32-bit count of milliseconds; anything longer (even "infinity") is as
  // good as no limit.
  const timeoutMs = Math.min(Duration.toMillis(config.requestTimeout), 2 ** 31 - 1)

  /**
   * One HTTP call, bounded in time; interruption and the time limit both abort the request.
   * The limit is a plain timer rather than Effect's `timeoutFail`, which forked a fiber per call
   * (about 0.2 ms of every call on Bun). The call is one `Effect.async` with one abort
   * controller, which the time limit and the interruption both use; the answer is decoded as it
   * arrives, without another trip through the scheduler. The timer still fires at the limit even
   * if the SDK is stuck before the request (resolving credentials).
   */
  const call = <A, I>(
    region: string,
    operation: string,
    schema: Schema.Schema<A, I>,
    send: (c: Clients, signal: AbortSignal) => Promise<unknown>
  ): Effect.Effect<A, AwsError> => {
    const decode = Schema.decodeUnknownEither(schema)
    return Effect.flatMap(clientsFor(region), (c) =>
      Effect.async<A, AwsError>((resume) => {
        const controller = new AbortController()
        let settled = false
        const settle = (outcome: Effect.Effect<A, AwsError>): void => {
          if (settled) return
          settled = true
          clearTimeout(timer)
          resume(outcome)
        }
        const timer = setTimeout(() => {
          settle(
            Effect.fail(
              new AwsError({
                operation,
                code: "TimeoutError",
                message: `no answer within ${Duration.format(config.requestTimeout)}`,
                region,
                httpStatus: null,
                requestId: null
              })
            )
          )
          controller.abort()
        }, timeoutMs)
        let sent: Promise<unknown>
        try {
          sent = send(c, controller.signal)
        } catch (error) {
          sent = Promise.reject(error)
        }
        sent.then(
          (output) =>
            settle(
              Either.match(decode(output), {
                onLeft: (e) => Effect.fail(decodeError(operation, region, e)),
                onRight: (a) => Effect.succeed(a)
              })
            ),
          (error: unknown) => settle(Effect.fail(error instanceof AwsError ? error : fromSdkError(operation, region, error, config.endpoint)))
        )
        // Interrupted: the request is aborted; nothing is resumed.
        return Effect.sync(() => {
          settled = true
          clearTimeout(timer)
          controller.abort()
        })
      })
    )
  }

  const retried = <A>(effect: Effect.Effect<A, AwsError>) => retryingCall(effect, config.callRetry)

  const Void = Schema.Unknown

  return {
    getCallerIdentity: (region) =>
      retried(call(region, "GetCallerIdentity", Identity, (c, signal) => c.sts.send(new c.sdk.sts.GetCallerIdentityCommand({}), { abortSignal: signal }))),

    accessKeyId: (region) =>
      clientsFor(region).pipe(
        Effect.flatMap((c) => Effect.tryPromise(() => c.ec2.config.credentials())),
        Effect.map((credentials) => credentials.accessKeyId),
        Effect.timeout(config.requestTimeout),
        Effect.orElseSucceed(() => null)
      ),

    defaultVpc: (region) =>
      retried(
        call(region, "DescribeVpcs", Vpcs, (c, signal) =>
          c.ec2.send(new c.sdk.ec2.DescribeVpcsCommand({ Filters: [{ Name: "isDefault", Values: ["true"] }] }), { abortSignal: signal })
        )
      ).pipe(Effect.map((out) => out.Vpcs?.[0]?.VpcId ?? null)),

    defaultSubnets: (region) =>
      retried(
        call(region, "DescribeSubnets", Subnets, (c, signal) =>
          c.ec2.send(new c.sdk.ec2.DescribeSubnetsCommand({ Filters: [{ Name: "default-for-az", Values: ["true"] }] }), { abortSignal: signal })
        )
      ).pipe(
        Effect.map((out) =>
          (out.Subnets ?? [])
            .map((s) => ({ subnetId: s.SubnetId, availabilityZone: s.AvailabilityZone }))
            .sort((a, b) => a.availabilityZone.localeCompare(b.availabilityZone))
        )
      ),

    findSecurityGroup: (region, vpcId, name) =>
      retried(
        call(region, "DescribeSecurityGroups", SecurityGroups, (c, signal) =>
          c.ec2.send(
            new c.sdk.ec2.DescribeSecurityGroupsCommand({
              Filters: [
                { Name: "group-name", Values: [name] },
                { Name: "vpc-id", Values: [vpcId] }
              ]
            }),
            { abortSignal: signal }
          )
        )
      ).pipe(Effect.map((out) => out.SecurityGroups?.[0]?.GroupId ?? null)),

    createSecurityGroup: (region, vpcId, name, description, tags) =>
      retried(
        call(region, "CreateSecurityGroup", CreatedGroup, (c, signal) =>
          c.ec2.send(
            new c.sdk.ec2.CreateSecurityGroupCommand({
              GroupName: name,
              Description: description,
              VpcId: vpcId,
              TagSpecifications: [{ ResourceType: "security-group", Tags: toSdkTags(tags) }]
            }),
            { abortSignal: signal }
          )
        )
      ).pipe(Effect.map((out) => out.GroupId)),

    allowSshFromAnywhere: (region, groupId) =>
      retried(
        call(region, "AuthorizeSecurityGroupIngress", Void, (c, signal) =>
          c.ec2.send(
            new c.sdk.ec2.AuthorizeSecurityGroupIngressCommand({
              GroupId: groupId,
              IpPermissions: [
                {
                  IpProtocol: "tcp",
                  FromPort: 22,
                  ToPort: 22,
                  IpRanges: [{ CidrIp: "0.0.0.0/0", Description: "SSH (SkyREPL)" }],
                  Ipv6Ranges: [{ CidrIpv6: "::/0", Description: "SSH (SkyREPL)" }]
                }
              ]
            }),
            { abortSignal: signal }
          )
        )
      ).pipe(Effect.asVoid),

    findKeyPair: (region, name) =>
      retried(
        call(region, "DescribeKeyPairs", KeyPairs, (c, signal) =>
          c.ec2.send(new c.sdk.ec2.DescribeKeyPairsCommand({ KeyNames: [name] }), { abortSignal: signal })
        )
      ).pipe(
        Effect.map((out) => {
          const found = (out.KeyPairs ?? []).find((k) => k.KeyName === name)
          return found === undefined ? null : (found.Tags ?? [])
        }),
        Effect.catchIf(
          (e) => e.code === "InvalidKeyPair.NotFound",
          () => Effect.succeed(null)
        )
      ),

    createKeyPair: (region, name, tags) =>
      call(region, "CreateKeyPair", CreatedKeyPair, (c, signal) =>
        c.ec2.send(
          new c.sdk.ec2.CreateKeyPairCommand({
            KeyName: name,
            KeyType: "rsa",
            KeyFormat: "pem",
            TagSpecifications: [{ ResourceType: "key-pair", Tags: toSdkTags(tags) }]
          }),
          { abortSignal: signal }
        )
      ).pipe(Effect.map((out) => out.KeyMaterial)),

    deleteKeyPair: (region, name) =>
      retried(
        call(region, "DeleteKeyPair", Void, (c, signal) =>
          c.ec2.send(new c.sdk.ec2.DeleteKeyPairCommand({ KeyName: name }), { abortSignal: signal })
        )
      ).pipe(Effect.asVoid),

    describeImages: (region, query) =>
      Effect.gen(function* () {
        const out: Array<Image> = []
        let token: string | undefined
        do {
          const page = yield* retried(
            call(region, "DescribeImages", Images, (c, signal) =>
              c.ec2.send(
                new c.sdk.ec2.DescribeImagesCommand({
                  ...(query.owners === undefined ? {} : { Owners: [...query.owners] }),
                  ...(query.imageIds === undefined ? {} : { ImageIds: [...query.imageIds] }),
                  ...(query.filters === undefined ? {} : { Filters: toSdkFilters(query.filters) }),
                  ...(token === undefined ? {} : { NextToken: token })
                }),
                { abortSignal: signal }
              )
            )
          )
          out.push(...(page.Images ?? []))
          token = page.NextToken === undefined || page.NextToken === "" ? undefined : page.NextToken
        } while (token !== undefined)
        return out
      }),

    runInstance: (region, input) =>
      call(region, "RunInstances", RunResult, (c, signal) => {
        const known = (type: string): type is Ec2Sdk._InstanceType => c.sdk.instanceTypes.has(type)
        const type = input.InstanceType
        if (!known(type)) {
          // Thrown as EC2 would answer it, so it is classified like EC2's own refusal.
          return Promise.reject(
            Object.assign(new Error(`${type} is not an instance type EC2 offers (as far as this AWS SDK knows)`), {
              name: "InvalidParameterValue",
              $metadata: { httpStatusCode: 400 }
            })
          )
        }
        return c.ec2.send(new c.sdk.ec2.RunInstancesCommand({ ...input, InstanceType: type }), { abortSignal: signal })
      }).pipe(Effect.map((out) => out.Instances[0])),

    describeInstances: (region, query) =>
      retried(
        call(region, "DescribeInstances", Reservations, (c, signal) =>
          c.ec2.send(
            new c.sdk.ec2.DescribeInstancesCommand({
              ...(query.instanceIds === undefined ? {} : { InstanceIds: [...query.instanceIds] }),
              ...(query.filters === undefined ? {} : { Filters: toSdkFilters(query.filters) }),
              ...(query.maxResults === undefined ? {} : { MaxResults: query.maxResults }),
              ...(query.nextToken === undefined ? {} : { NextToken: query.nextToken })
            }),
            { abortSignal: signal }
          )
        )
      ).pipe(
        Effect.map((out) => ({
          instances: out.Reservations.flatMap((r) => r.Instances ?? []),
          nextToken: out.NextToken === undefined || out.NextToken === "" ? null : out.NextToken
        }))
      ),

    terminateInstances: (region, ids) =>
      retried(
        call(region, "TerminateInstances", TerminateResult, (c, signal) =>
          c.ec2.send(new c.sdk.ec2.TerminateInstancesCommand({ InstanceIds: [...ids] }), { abortSignal: signal })
        )
      ).pipe(Effect.map((out) => out.TerminatingInstances)),

    createImage: (region, instanceId, name, description, tags) =>
      call(region, "CreateImage", CreatedImage, (c, signal) =>
        c.ec2.send(
          new c.sdk.ec2.CreateImageCommand({
            InstanceId: instanceId,
            Name: name,
            Description: description,
            // A reboot would kill the run that is going on the instance.
            NoReboot: true,
            // The EBS snapshots get the image's tags too, in the same call: they are SkyREPL's
            // from their first moment, and can be found by tag once no image leads to them.
            TagSpecifications: [
              { ResourceType: "image", Tags: toSdkTags(tags) },
              { ResourceType: "snapshot", Tags: toSdkTags(tags) }
            ]
          }),
          { abortSignal: signal }
        )
      ).pipe(Effect.map((out) => out.ImageId)),

    deregisterImage: (region, imageId) =>
      retried(
        call(region, "DeregisterImage", Void, (c, signal) =>
          c.ec2.send(new c.sdk.ec2.DeregisterImageCommand({ ImageId: imageId }), { abortSignal: signal })
        )
      ).pipe(Effect.asVoid),

    describeSnapshots: (region, filters) =>
      Effect.gen(function* () {
        const out: Array<EbsSnapshot> = []
        let token: string | undefined
        do {
          const page = yield* retried(
            call(region, "DescribeSnapshots", EbsSnapshots, (c, signal) =>
              c.ec2.send(
                new c.sdk.ec2.DescribeSnapshotsCommand({
                  OwnerIds: ["self"],
                  Filters: toSdkFilters(filters),
                  ...(token === undefined ? {} : { NextToken: token })
                }),
                { abortSignal: signal }
              )
            )
          )
          out.push(...page.Snapshots)
          token = page.NextToken === undefined || page.NextToken === "" ? undefined : page.NextToken
        } while (token !== undefined)
        return out
      }),

    createTags: (region, resourceIds, tags) =>
      retried(
        call(region, "CreateTags", Void, (c, signal) =>
          c.ec2.send(new c.sdk.ec2.CreateTagsCommand({ Resources: [...resourceIds], Tags: toSdkTags(tags) }), { abortSignal: signal })
        )
      ).pipe(Effect.asVoid),

    deleteSnapshot: (region, snapshotId) =>
      retried(
        call(region, "DeleteSnapshot", Void, (c, signal) =>
          c.ec2.send(new c.sdk.ec2.DeleteSnapshotCommand({ SnapshotId: snapshotId }), { abortSignal: signal })
        )
      ).pipe(Effect.asVoid)
  }
}
