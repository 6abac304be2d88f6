import { InvalidSpec, type ParsedSpec, type SpecOptions } from "@skyrepl/core"
import { Effect } from "effect"
import { isRegion, notARegion } from "./options.ts"

export const PROVIDER_ID = "aws"

export type Arch = "amd64" | "arm64"

/** Ubuntu releases the provider finds images for, by code name. */
export const ubuntuVersions = { noble: "24.04", jammy: "22.04", focal: "20.04" } as const
export type UbuntuVersion = keyof typeof ubuntuVersions

export const defaultInstanceTypes: Readonly<Record<Arch, string>> = { amd64: "t3.micro", arm64: "t4g.micro" }

/**
 * The image a launch boots: the newest Canonical Ubuntu of a release, or a given AMI (one made by
 * `repl snapshot create`, or any other the account can launch). An AMI's architecture is learnt
 * from EC2 when the instance is launched.
 */
export type AwsImage =
  | { readonly kind: "ubuntu"; readonly version: UbuntuVersion; readonly arch: Arch }
  | { readonly kind: "ami"; readonly imageId: string }

/** What a launch asks EC2 for, read back from `ParsedSpec.attributes`. */
export interface AwsSpec {
  /** Null for an AMI given alone: the default type of the image's architecture. */
  readonly instanceType: string | null
  readonly image: AwsImage
  readonly spot: boolean
  readonly region: string | null
}

export const validSpecForms: ReadonlyArray<string> = [
  "(empty): ubuntu:noble:amd64 on a t3.micro",
  "an instance type, e.g. t4g.nano or c8g.large: Ubuntu 24.04 (noble), arm64 on Graviton families (a1, t4g, c7g, m8g …), amd64 on the others",
  "ubuntu:VERSION:ARCH with VERSION noble, jammy or focal and ARCH amd64 or arm64, on a t3.micro (amd64) or t4g.micro (arm64)",
  "an AMI id, e.g. a snapshot's ami-0123456789abcdef0: that image on a t3.micro (x86_64) or t4g.micro (arm64)",
  "INSTANCE-TYPE:AMI-ID, e.g. c7g.large:ami-0123456789abcdef0: that image on that type (their architectures must match)"
]

/** EC2's image ids: `ami-` and 8 (older) or 17 hexadecimal digits. */
const amiPattern = /^ami-(?:[0-9a-f]{8}|[0-9a-f]{17})$/

const notAnAmi = (id: string): string => `"${id}" is not an AMI id (ami- and 8 or 17 hexadecimal digits)`

const sizes = "(?:nano|micro|small|medium|large|[0-9]*xlarge|metal(?:-[0-9]+xl)?)"
/** `c7gn.large`: family letters, generation, attribute letters, optional `-flex`-style variant, size. */
const instanceTypePattern = new RegExp(`^([a-z]+)([0-9]+)([a-z]*)(?:-([a-z0-9]+))?\\.${sizes}$`)
/** High-memory `u-6tb1.112xlarge`: Intel only. */
const highMemoryPattern = new RegExp(`^u-[0-9]+tb[0-9]+\\.${sizes}$`)

/**
 * Graviton types carry a `g` right after the generation (`t4g`, `c6gd`, `im4gn`, `g5g`), and
 * `a1` is the first Graviton. Every other family EC2 sells for Linux is x86-64.
 */
export const archOfInstanceType = (instanceType: string): Arch | null => {
  if (highMemoryPattern.test(instanceType)) return "amd64"
  const match = instanceTypePattern.exec(instanceType)
  if (match === null) return null
  const [, family, generation, attributes] = match
  if (family === "mac") return null
  if (family === "a" && generation === "1") return "arm64"
  return (attributes ?? "").startsWith("g") ? "arm64" : "amd64"
}

const invalid = (spec: string, message: string): InvalidSpec =>
  new InvalidSpec({ provider: PROVIDER_ID, spec, message, validForms: validSpecForms })

/** A region that is not a region's name: the spec's forms are beside the point, so none are listed. */
const invalidRegion = (spec: string, region: string): InvalidSpec =>
  new InvalidSpec({ provider: PROVIDER_ID, spec, message: notARegion(region), validForms: [] })

const parsed = (
  canonical: string,
  spec: { readonly instanceType: string; readonly version: UbuntuVersion; readonly arch: Arch; readonly spot: boolean; readonly region: string | null }
): ParsedSpec => ({
  provider: PROVIDER_ID,
  canonical,
  region: spec.region,
  attributes: {
    instanceType: spec.instanceType,
    distro: "ubuntu",
    version: spec.version,
    arch: spec.arch,
    spot: String(spec.spot)
  }
})

const parsedAmi = (canonical: string, imageId: string, instanceType: string | null, spot: boolean, region: string | null): ParsedSpec => ({
  provider: PROVIDER_ID,
  canonical,
  region,
  attributes: { image: imageId, ...(instanceType === null ? {} : { instanceType }), spot: String(spot) }
})

const isVersion = (text: string): text is UbuntuVersion => Object.hasOwn(ubuntuVersions, text)

/**
 * `spec` is an instance type or `ubuntu:VERSION:ARCH`; region and spot are launch options.
 * `canonical` names the image and machine (an instance type on its own means noble on it), so
 * it parses back to the same spec given the same options.
 */
export const parseSpec = (
  spec: string | undefined,
  options: SpecOptions,
  defaultRegion: string | null
): Effect.Effect<ParsedSpec, InvalidSpec> => {
  const text = (spec ?? "").trim()
  const region = options.region ?? defaultRegion
  if (options.region !== undefined && !isRegion(options.region)) {
    return Effect.fail(invalidRegion(text, options.region))
  }
  const spot = options.spot ?? false
  if (text === "") {
    return Effect.succeed(
      parsed("ubuntu:noble:amd64", { instanceType: defaultInstanceTypes.amd64, version: "noble", arch: "amd64", spot, region })
    )
  }
  if (amiPattern.test(text)) return Effect.succeed(parsedAmi(text, text, null, spot, region))
  if (text.startsWith("ami-")) {
    return Effect.fail(invalid(text, notAnAmi(text)))
  }
  const parts = text.split(":")
  if (parts.length === 2 && parts[1]!.startsWith("ami-")) {
    const [instanceType, imageId] = parts as [string, string]
    if (!amiPattern.test(imageId)) {
      return Effect.fail(invalid(text, notAnAmi(imageId)))
    }
    if (archOfInstanceType(instanceType) === null) {
      return Effect.fail(invalid(text, `"${instanceType}" is not an instance type SkyREPL can launch (e.g. t3.micro, c7g.large)`))
    }
    return Effect.succeed(parsedAmi(text, imageId, instanceType, spot, region))
  }
  if (text.includes(":")) {
    const [distro, version, arch, ...rest] = parts
    if (distro !== "ubuntu" || rest.length > 0 || version === undefined || arch === undefined) {
      return Effect.fail(invalid(text, `the aws provider does not know the spec "${text}"; images are ubuntu:VERSION:ARCH`))
    }
    if (!isVersion(version)) {
      return Effect.fail(invalid(text, `unknown Ubuntu version "${version}" in "${text}"; use noble, jammy or focal`))
    }
    if (arch !== "amd64" && arch !== "arm64") {
      return Effect.fail(invalid(text, `unknown architecture "${arch}" in "${text}"; use amd64 or arm64`))
    }
    return Effect.succeed(parsed(text, { instanceType: defaultInstanceTypes[arch], version, arch, spot, region }))
  }
  const arch = archOfInstanceType(text)
  if (arch === null) {
    return Effect.fail(
      invalid(
        text,
        text.startsWith("mac")
          ? `"${text}" is a Mac instance type; they need dedicated hosts and do not run Ubuntu`
          : `the aws provider does not know the spec "${text}"; give an instance type such as t3.micro or ubuntu:noble:arm64`
      )
    )
  }
  return Effect.succeed(parsed(text, { instanceType: text, version: "noble", arch, spot, region }))
}

/** Reads the provider's own fields back from a spec it parsed. */
export const awsSpecOf = (spec: ParsedSpec): AwsSpec | null => {
  const { instanceType, version, arch, spot, image } = spec.attributes
  if (image !== undefined) {
    if (!amiPattern.test(image)) return null
    return { instanceType: instanceType ?? null, image: { kind: "ami", imageId: image }, spot: spot === "true", region: spec.region }
  }
  if (instanceType === undefined || version === undefined || !isVersion(version)) return null
  if (arch !== "amd64" && arch !== "arm64") return null
  return { instanceType, image: { kind: "ubuntu", version, arch }, spot: spot === "true", region: spec.region }
}
