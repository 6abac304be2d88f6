import { describeCause, type ProviderError } from "@skyrepl/core"
import { Duration, Effect } from "effect"
import { randomUUID } from "node:crypto"
import { chmodSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { basename, dirname, join } from "node:path"
import { type AwsApi, type Identity, type Tag, tagValue } from "./aws-api.ts"
import { type ErrorContext, outcomeUnknown, providerError, toProviderError } from "./errors.ts"
import { endpointShown } from "./options.ts"

export const SECURITY_GROUP_NAME = "skyrepl-default"

export const keyPairName = (region: string): string => `skyrepl-${region}`

/** Names the creation that made a key pair, so the machine that made it knows it for its own. */
export const KEY_CREATION_TAG = "skyrepl:creation"

/**
 * Kept beside the key's file from before `CreateKeyPair` until its private key is written (or
 * AWS refused): a pair tagged with this creation whose private key is missing here is one whose
 * answer, the only copy of its private key, was lost on the way.
 */
const creationMarker = (file: string, creation: string): string => `${file}.creating-${creation}`

// A marker left behind only costs an empty file; it never fails a launch.
const dropMarker = (marker: string): Effect.Effect<void> => Effect.ignore(Effect.try(() => rmSync(marker, { force: true })))

const endpointPart = (endpoint: string): string =>
  endpoint.replace(/^[a-z]+:\/\//, "").replace(/[^A-Za-z0-9.-]+/g, "_").replace(/_+$/, "")

/**
 * `{home}/keys/aws-{region}.pem`. Against a custom endpoint (an emulator) the file name also
 * carries the endpoint, so an emulator's key never displaces the one of the real account. Not
 * its userinfo: a password must never be in a file name. Endpoints that differ only in it are
 * one server, so they share the key, as profiles of real AWS share theirs; a password that
 * changes then keeps its key.
 */
export const keyPath = (home: string, region: string, endpoint: string | null): string =>
  endpoint === null
    ? join(home, "keys", `aws-${region}.pem`)
    : join(home, "keys", `aws-${region}@${endpointPart(endpointShown(endpoint))}.pem`)

/** Where earlier versions kept the key of an endpoint with userinfo (it was in the name); null when that is the name now. */
const legacyKeyPath = (home: string, region: string, endpoint: string | null): string | null => {
  if (endpoint === null) return null
  const legacy = join(home, "keys", `aws-${region}@${endpointPart(endpoint)}.pem`)
  return legacy === keyPath(home, region, endpoint) ? null : legacy
}

/**
 * Renames what an earlier version wrote under a name carrying the endpoint's userinfo (the key,
 * its creation markers, keys moved aside) to the name without it: the key keeps working, and
 * the password leaves the file names. Nothing is replaced that exists under the new name. Its
 * error names no path, which would carry the password.
 */
const moveLegacyKey = (home: string, region: string, endpoint: string | null): Effect.Effect<void, ProviderError> =>
  Effect.try({
    try: () => {
      const legacy = legacyKeyPath(home, region, endpoint)
      if (legacy === null) return
      const dir = dirname(legacy)
      const from = basename(legacy)
      const to = basename(keyPath(home, region, endpoint))
      const entries = existsSync(dir) ? readdirSync(dir) : []
      for (const entry of entries) {
        if (!entry.startsWith(from)) continue
        const target = join(dir, to + entry.slice(from.length))
        if (!existsSync(target)) renameSync(join(dir, entry), target)
      }
    },
    catch: (cause) =>
      providerError(
        "CreateKeyPair",
        "internal",
        `cannot rename the key file of ${endpointShown(endpoint ?? "")} in ${region}, written by an earlier SkyREPL under a name ` +
          `that carried the endpoint's userinfo (${stringCode(cause)}); rename ${join(home, "keys")}/aws-${region}@…pem by hand`
      )
  })

const stringCode = (cause: unknown): string => {
  const code = typeof cause === "object" && cause !== null ? Reflect.get(cause, "code") : undefined
  return typeof code === "string" ? code : "error"
}

export interface RegionSetup {
  readonly region: string
  readonly identity: Identity
  readonly securityGroupId: string
  readonly keyName: string
  readonly keyFile: string
}

export interface SetupOptions {
  readonly home: string
  readonly endpoint: string | null
  readonly managedTags: ReadonlyArray<Tag>
  /** Describes the credentials in use when AWS refuses them (no ARN is known yet then). */
  readonly describeCredentials: (region: string) => Effect.Effect<string>
}

const writePem = (file: string, pem: string): void => {
  mkdirSync(join(file, ".."), { recursive: true, mode: 0o700 })
  const temporary = `${file}.${process.pid}.tmp`
  writeFileSync(temporary, pem.endsWith("\n") ? pem : `${pem}\n`, { mode: 0o600 })
  // The mode given to writeFileSync is masked by the umask; the key must be 0600 regardless.
  chmodSync(temporary, 0o600)
  renameSync(temporary, file)
}

/**
 * The identity: `GetCallerIdentity` needs no permission, so its failure is always about the
 * credentials themselves, and the message says whose.
 */
const checkIdentity = (api: AwsApi, options: SetupOptions, region: string): Effect.Effect<Identity, ProviderError> =>
  api.getCallerIdentity(region).pipe(
    Effect.catchAll((error) =>
      Effect.flatMap(options.describeCredentials(region), (who) => Effect.fail(toProviderError(error, { identity: who })))
    )
  )

const ensureSecurityGroup = (api: AwsApi, options: SetupOptions, region: string, context: ErrorContext) =>
  Effect.gen(function* () {
    const vpcId = yield* api.defaultVpc(region)
    if (vpcId === null) {
      return yield* providerError(
        "DescribeVpcs",
        "invalid-request",
        `${region} has no default VPC, which SkyREPL launches into; create one with: aws ec2 create-default-vpc --region ${region}`
      )
    }
    const existing = yield* api.findSecurityGroup(region, vpcId, SECURITY_GROUP_NAME)
    // An existing group is used as it is: its owner may have narrowed SSH on purpose.
    if (existing !== null) return existing
    const created = yield* api
      .createSecurityGroup(region, vpcId, SECURITY_GROUP_NAME, "SkyREPL instances: SSH in; the agent only connects out", options.managedTags)
      .pipe(
        // Another process created it between our look-up and our create.
        Effect.catchIf(
          (e) => e.code === "InvalidGroup.Duplicate",
          () => Effect.map(api.findSecurityGroup(region, vpcId, SECURITY_GROUP_NAME), (id) => id ?? "")
        )
      )
    yield* api.allowSshFromAnywhere(region, created).pipe(Effect.catchIf((e) => e.code === "InvalidPermission.Duplicate", () => Effect.void))
    return created
  }).pipe(Effect.mapError((e) => (e._tag === "AwsError" ? toProviderError(e, context) : e)))

const missingPem = (region: string, name: string, file: string): ProviderError =>
  providerError(
    "CreateKeyPair",
    "invalid-request",
    `the key pair ${name} exists in ${region} but its private key ${file} is missing here, and SkyREPL never replaces a ` +
      `key pair silently (instances started from another machine use it). Copy ${file} from the machine that created it ` +
      `(mode 0600), or, if that key is lost, delete the pair (aws ec2 delete-key-pair --region ${region} --key-name ${name}) ` +
      `and SkyREPL creates a new one.`
  )

const ensureKeyPair = (api: AwsApi, options: SetupOptions, region: string, context: ErrorContext) =>
  Effect.gen(function* () {
    const name = keyPairName(region)
    const file = keyPath(options.home, region, options.endpoint)
    yield* moveLegacyKey(options.home, region, options.endpoint)
    const inAws = yield* api.findKeyPair(region, name)
    const local = existsSync(file)
    if (inAws !== null && local) return { keyName: name, keyFile: file }
    if (inAws !== null) {
      // Made by a creation from here whose answer was lost: nobody has its private key, and no
      // instance can use it (none is launched without the key here), so it is made again.
      const lost = tagValue(inAws, KEY_CREATION_TAG)
      if (lost === undefined || !existsSync(creationMarker(file, lost))) return yield* missingPem(region, name, file)
      yield* api.deleteKeyPair(region, name)
      yield* dropMarker(creationMarker(file, lost))
    }
    if (local) {
      // Its pair is gone from AWS, so the file opens nothing; it is kept aside, never destroyed.
      yield* Effect.try(() => renameSync(file, `${file}.orphaned-${Date.now()}`)).pipe(
        Effect.mapError((cause) => providerError("CreateKeyPair", "internal", `cannot move the stale key ${file} aside: ${describeCause(cause)}`, cause))
      )
    }
    const creation = randomUUID()
    const marker = creationMarker(file, creation)
    yield* Effect.try(() => {
      mkdirSync(join(file, ".."), { recursive: true, mode: 0o700 })
      writeFileSync(marker, "", { mode: 0o600 })
    }).pipe(Effect.mapError((cause) => providerError("CreateKeyPair", "internal", `cannot write ${marker}: ${describeCause(cause)}`, cause)))
    const pem = yield* api.createKeyPair(region, name, [...options.managedTags, { key: KEY_CREATION_TAG, value: creation }]).pipe(
      // A refusal created nothing; an answer lost may have created the pair, which the marker
      // lets the next try recognise.
      Effect.tapError((e) => (outcomeUnknown(e) ? Effect.void : dropMarker(marker))),
      Effect.catchIf(
        (e) => e.code === "InvalidKeyPair.Duplicate",
        // Another process on this machine may be creating it right now: give it a moment to write the file.
        () =>
          Effect.gen(function* () {
            for (let i = 0; i < 20 && !existsSync(file); i++) yield* Effect.sleep(Duration.millis(100))
            return existsSync(file) ? null : yield* missingPem(region, name, file)
          })
      )
    )
    if (pem === null) return { keyName: name, keyFile: file }
    yield* Effect.try(() => writePem(file, pem)).pipe(
      Effect.catchAll((cause) =>
        // A pair whose private key could not be kept is useless to everyone: remove it again.
        api.deleteKeyPair(region, name).pipe(
          Effect.ignore,
          Effect.zipRight(providerError("CreateKeyPair", "internal", `cannot write the private key ${file}: ${describeCause(cause)}`, cause))
        )
      ),
      Effect.ensuring(dropMarker(marker))
    )
    return { keyName: name, keyFile: file }
  }).pipe(Effect.mapError((e) => (e._tag === "AwsError" ? toProviderError(e, context) : e)))

/**
 * First use of a region: who we are, the security group, the key pair. Each step creates what
 * is missing and leaves what exists alone.
 */
export const setUpRegion = (api: AwsApi, options: SetupOptions, region: string): Effect.Effect<RegionSetup, ProviderError> =>
  Effect.gen(function* () {
    const identity = yield* checkIdentity(api, options, region)
    const context: ErrorContext = { identity: identity.Arn }
    const securityGroupId = yield* ensureSecurityGroup(api, options, region, context)
    const key = yield* ensureKeyPair(api, options, region, context)
    return { region, identity, securityGroupId, ...key }
  })
