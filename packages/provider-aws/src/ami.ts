import type { ProviderError } from "@skyrepl/core"
import { Duration, Effect, Either, Schema } from "effect"
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import type { AwsApi } from "./aws-api.ts"
import { providerError, toProviderError } from "./errors.ts"
import { endpointShown } from "./options.ts"
import { type Arch, type UbuntuVersion, ubuntuVersions } from "./spec.ts"

/** Canonical's image-publishing account, per AWS partition. */
export const canonicalOwner = (region: string): string =>
  region.startsWith("us-gov-") ? "513442679011" : region.startsWith("cn-") ? "837727238323" : "099720109477"

const ec2Architecture: Readonly<Record<Arch, string>> = { amd64: "x86_64", arm64: "arm64" }

export interface ResolvedImage {
  readonly imageId: string
  readonly name: string
}

const CacheEntry = Schema.Struct({ imageId: Schema.String, name: Schema.String, resolvedAt: Schema.Number })
const CacheFile = Schema.parseJson(Schema.Struct({ version: Schema.Literal(1), entries: Schema.Record({ key: Schema.String, value: CacheEntry }) }))
type CacheFile = typeof CacheFile.Type

export const CACHE_FILE = "aws-amis.json"

export interface AmiCacheOptions {
  readonly cacheDir: string
  readonly ttl: Duration.Duration
  /** Part of the key (without its userinfo, no password in a file), so an emulator's images never stand in for real AWS's. */
  readonly endpoint: string | null
  /**
   * The entries this process already read or resolved, kept by the provider: a launch then
   * costs no file read and no JSON decode. A new provider (a new process) starts empty and
   * reads the file, so an edited or deleted cache still counts from the next process on.
   */
  readonly memo?: Map<string, typeof CacheEntry.Type>
}

const cacheKey = (options: AmiCacheOptions, region: string, version: UbuntuVersion, arch: Arch): string =>
  `${options.endpoint === null ? "aws" : endpointShown(options.endpoint)} ${region} ubuntu:${version}:${arch}`

const readCache = (path: string): CacheFile => {
  let text: string
  try {
    text = readFileSync(path, "utf8")
  } catch {
    return { version: 1, entries: {} }
  }
  // A cache that does not decode is as good as none: it is rebuilt by the next look-up.
  return Either.getOrElse(Schema.decodeUnknownEither(CacheFile)(text), () => ({ version: 1 as const, entries: {} }))
}

/** Written to a temporary file and renamed, so a reader never sees half a file. */
const writeCache = (dir: string, path: string, cache: CacheFile): void => {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const temporary = `${path}.${process.pid}.tmp`
  writeFileSync(temporary, JSON.stringify(cache, null, 2) + "\n", { mode: 0o600 })
  renameSync(temporary, path)
}

/** Canonical's server images: `ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250115`. */
const imageNamePattern = (version: UbuntuVersion, arch: Arch): RegExp =>
  new RegExp(`^ubuntu/images/[^/]+/ubuntu-${version}-${ubuntuVersions[version].replace(".", "\\.")}-${arch}-server-[0-9.]+$`)

/**
 * The newest Ubuntu server image Canonical published for `version` and `arch` in `region`,
 * cached for `ttl` in `{cacheDir}/aws-amis.json` (deleting the file forces a fresh look-up).
 */
export const resolveUbuntuImage = (
  api: AwsApi,
  options: AmiCacheOptions,
  region: string,
  version: UbuntuVersion,
  arch: Arch
): Effect.Effect<ResolvedImage, ProviderError> =>
  Effect.gen(function* () {
    const path = join(options.cacheDir, CACHE_FILE)
    const key = cacheKey(options, region, version, arch)
    const now = Date.now()
    const fresh = (entry: typeof CacheEntry.Type | undefined): entry is typeof CacheEntry.Type =>
      entry !== undefined && now - entry.resolvedAt < Duration.toMillis(options.ttl) && entry.resolvedAt <= now
    const remembered = options.memo?.get(key)
    if (fresh(remembered)) return { imageId: remembered.imageId, name: remembered.name }
    const cached = readCache(path).entries[key]
    if (fresh(cached)) {
      options.memo?.set(key, cached)
      return { imageId: cached.imageId, name: cached.name }
    }
    const owner = canonicalOwner(region)
    const images = yield* api
      .describeImages(region, {
        owners: [owner],
        filters: [
          { name: "name", values: [`ubuntu/images/*/ubuntu-${version}-${ubuntuVersions[version]}-${arch}-server-*`] },
          { name: "architecture", values: [ec2Architecture[arch]] },
          { name: "state", values: ["available"] }
        ]
      })
      .pipe(Effect.mapError((e) => toProviderError(e)))
    const pattern = imageNamePattern(version, arch)
    const newest = images
      .filter((image) => image.Name !== undefined && pattern.test(image.Name) && (image.OwnerId === undefined || image.OwnerId === owner))
      .sort((a, b) => (b.CreationDate ?? "").localeCompare(a.CreationDate ?? "") || (b.Name ?? "").localeCompare(a.Name ?? ""))[0]
    if (newest === undefined || newest.Name === undefined) {
      return yield* providerError(
        "DescribeImages",
        "not-found",
        `no Ubuntu ${version} (${ubuntuVersions[version]}) ${arch} server image from Canonical (owner ${owner}) in ${region}`
      )
    }
    const resolved = { imageId: newest.ImageId, name: newest.Name }
    options.memo?.set(key, { ...resolved, resolvedAt: now })
    // Re-read before writing: another process may have cached other entries meanwhile.
    yield* Effect.try(() => {
      const fresh = readCache(path)
      writeCache(options.cacheDir, path, { version: 1, entries: { ...fresh.entries, [key]: { ...resolved, resolvedAt: now } } })
    }).pipe(Effect.ignore)
    return resolved
  })

/**
 * An AMI given in the spec (a snapshot, or any image the account can launch): it must exist in
 * the region, be `available`, and be for Linux on x86-64 or arm64. Its architecture picks the
 * instance type when the spec names none. Not cached: a snapshot can be deleted at any time.
 */
export const describeGivenImage = (
  api: AwsApi,
  region: string,
  imageId: string
): Effect.Effect<ResolvedImage & { readonly arch: Arch }, ProviderError> =>
  Effect.gen(function* () {
    const images = yield* api.describeImages(region, { imageIds: [imageId] }).pipe(
      Effect.catchIf(
        (e) => e.code === "InvalidAMIID.NotFound" || e.code === "InvalidAMIID.Unavailable",
        () => Effect.succeed([])
      ),
      Effect.mapError((e) => toProviderError(e))
    )
    const image = images.find((i) => i.ImageId === imageId)
    if (image === undefined) {
      return yield* providerError("DescribeImages", "not-found", `the image ${imageId} does not exist in ${region}, or this account cannot launch it`)
    }
    if (image.State !== undefined && image.State !== "available") {
      return yield* providerError("DescribeImages", "invalid-request", `the image ${imageId} is ${image.State}, not available; a new snapshot is usable once it is available`)
    }
    const arch = (Object.keys(ec2Architecture) as Array<Arch>).find((a) => ec2Architecture[a] === image.Architecture)
    if (arch === undefined) {
      return yield* providerError(
        "DescribeImages",
        "invalid-request",
        `the image ${imageId} is for ${image.Architecture ?? "an unknown architecture"}; SkyREPL launches x86_64 and arm64 Linux images`
      )
    }
    return { imageId, name: image.Name ?? imageId, arch }
  })
