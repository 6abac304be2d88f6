import { InvalidSpec, type ParsedSpec, type SpecOptions } from "@skyrepl/core"
import { Effect } from "effect"

export const PROVIDER_ID = "orbstack"

export type Arch = "arm64" | "amd64"

/** Ubuntu releases OrbStack offers that SkyREPL supports, by codename, with their numbers. */
export const ubuntuVersions = {
  noble: "24.04",
  jammy: "22.04",
  focal: "20.04"
} as const satisfies Readonly<Record<string, string>>

export type UbuntuVersion = keyof typeof ubuntuVersions

export const defaultVersion: UbuntuVersion = "noble"

/** A spec after parsing: what `orbctl create {distro}:{version} NAME -a {arch}` is given. */
export interface OrbStackSpec {
  readonly distro: "ubuntu"
  readonly version: UbuntuVersion
  readonly arch: Arch
}

/**
 * A snapshot is a stopped clone of an instance's machine, named `replsnap-{name}`. The prefix
 * keeps snapshots out of the instance sweep (they do not start with `repl-`) and keeps
 * `snapshot delete` away from machines SkyREPL did not make. A snapshot's id (its machine's
 * name) is also a spec: a new machine cloned from it.
 */
export const SNAPSHOT_PREFIX = "replsnap-"

/** A machine name must also be a hostname label: 63 characters at most. */
export const snapshotNamePattern = /^[a-z0-9](?:[a-z0-9-]{0,53})$/

export const snapshotMachine = (name: string): string => `${SNAPSHOT_PREFIX}${name}`

export const isSnapshotMachine = (machine: string): boolean =>
  machine.startsWith(SNAPSHOT_PREFIX) && snapshotNamePattern.test(machine.slice(SNAPSHOT_PREFIX.length))

export const validSpecForms: ReadonlyArray<string> = [
  "(empty): ubuntu:noble on this Mac's own architecture",
  "DISTRO[:VERSION[:ARCH]], e.g. ubuntu, ubuntu:jammy, ubuntu:22.04:amd64",
  "DISTRO: ubuntu (the default)",
  "VERSION: noble or 24.04 (the default), jammy or 22.04, focal or 20.04",
  "ARCH: arm64 (the default on Apple Silicon) or amd64",
  `a snapshot's id, ${SNAPSHOT_PREFIX}NAME: a new machine cloned from it`
]

const isVersion = (text: string): text is UbuntuVersion => Object.hasOwn(ubuntuVersions, text)

const versionOf = (text: string): UbuntuVersion | null => {
  if (isVersion(text)) return text
  for (const [codename, number] of Object.entries(ubuntuVersions)) {
    if (number === text && isVersion(codename)) return codename
  }
  return null
}

export const canonicalSpec = (spec: OrbStackSpec): string => `${spec.distro}:${spec.version}:${spec.arch}`

const toParsed = (spec: OrbStackSpec): ParsedSpec => ({
  provider: PROVIDER_ID,
  canonical: canonicalSpec(spec),
  region: null,
  attributes: { distro: spec.distro, version: spec.version, release: ubuntuVersions[spec.version], arch: spec.arch }
})

const invalid = (spec: string, message: string) =>
  Effect.fail(new InvalidSpec({ provider: PROVIDER_ID, spec, message, validForms: validSpecForms }))

/**
 * `distro:version:arch`, each part optional from the right. The canonical form always names all
 * three, so a spec stored on an instance means the same machine on any Mac.
 */
export const parseSpec = (
  spec: string | undefined,
  options: SpecOptions = {},
  defaultArch: Arch = "arm64"
): Effect.Effect<ParsedSpec, InvalidSpec> => {
  const text = (spec ?? "").trim()
  if (options.region !== undefined) {
    return invalid(text, `OrbStack machines run on this Mac and have no regions; drop the region "${options.region}"`)
  }
  if (options.spot === true) return invalid(text, "OrbStack has no spot machines; drop spot")
  if (text === "") return Effect.succeed(toParsed({ distro: "ubuntu", version: defaultVersion, arch: defaultArch }))
  if (text.startsWith(SNAPSHOT_PREFIX)) {
    if (!isSnapshotMachine(text)) {
      return invalid(text, `"${text}" is not a snapshot id (${SNAPSHOT_PREFIX} and lower-case letters, digits and hyphens)`)
    }
    return Effect.succeed({ provider: PROVIDER_ID, canonical: text, region: null, attributes: { snapshot: text } })
  }
  const parts = text.split(":")
  const [distro, versionText, archText] = parts
  if (parts.length > 3 || parts.some((part) => part === "")) {
    return invalid(text, `the orbstack spec "${text}" is not of the form distro:version:arch`)
  }
  if (distro !== "ubuntu") {
    return invalid(text, `the orbstack provider runs ubuntu machines, not "${distro ?? ""}"`)
  }
  const version = versionText === undefined ? defaultVersion : versionOf(versionText)
  if (version === null) {
    return invalid(text, `ubuntu version "${versionText ?? ""}" is not one of noble (24.04), jammy (22.04), focal (20.04)`)
  }
  if (archText !== undefined && archText !== "arm64" && archText !== "amd64") {
    return invalid(text, `architecture "${archText}" is not arm64 or amd64`)
  }
  return Effect.succeed(toParsed({ distro, version, arch: archText ?? defaultArch }))
}

/** The snapshot a parsed spec clones, or null for a spec that creates a machine. */
export const snapshotOf = (parsed: ParsedSpec): string | null => {
  const snapshot = parsed.attributes["snapshot"]
  return snapshot !== undefined && isSnapshotMachine(snapshot) ? snapshot : null
}

/** The machine spec a parsed spec stands for; it was produced by `parseSpec`, so it is trusted. */
export const specOf = (parsed: ParsedSpec): OrbStackSpec => {
  const version = versionOf(parsed.attributes["version"] ?? "") ?? defaultVersion
  const arch = parsed.attributes["arch"] === "amd64" ? "amd64" : "arm64"
  return { distro: "ubuntu", version, arch }
}
