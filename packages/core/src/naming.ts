import { Either, Schema } from "effect"

const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"

/**
 * Random bytes from the Web Crypto global rather than node:crypto, whose import loads the
 * stream modules with it (several milliseconds of every CLI command on Bun, bench B2).
 */
const randomBytes = (length: number): Uint8Array => crypto.getRandomValues(new Uint8Array(length))

/** `bytes` random bytes in hex: tokens and secrets. */
export const randomHex = (bytes: number): string => Buffer.from(randomBytes(bytes)).toString("hex")

const randomBase36 = (length: number): string => {
  const bytes = randomBytes(length)
  let out = ""
  for (const byte of bytes) out += alphabet[byte % 36]
  return out
}

/**
 * A lower-case base36 id whose first 8 characters are the creation time in milliseconds, so ids
 * sort by age and the age of an instance can be read from its name alone (the sweep's
 * `minAge` works even when the store is gone).
 */
export const newId = (now: number = Date.now()): string => now.toString(36).padStart(8, "0") + randomBase36(6)

/** The creation time encoded in an id made by `newId`. */
export const idTime = (id: string): number | undefined => {
  if (!/^[0-9a-z]{14}$/.test(id)) return undefined
  const ms = parseInt(id.slice(0, 8), 36)
  return Number.isFinite(ms) ? ms : undefined
}

/** A control plane id: one per state home, written into every instance name it creates. */
export const newControlId = (): string => randomBase36(8)

export const InstanceNameParts = Schema.Struct({
  controlId: Schema.String.pipe(Schema.pattern(/^[0-9a-z]{8}$/)),
  manifestId: Schema.String.pipe(Schema.pattern(/^[0-9a-z]{14}$/)),
  instanceId: Schema.String.pipe(Schema.pattern(/^[0-9a-z]{14}$/))
})
export type InstanceNameParts = typeof InstanceNameParts.Type

const namePattern = /^repl-([0-9a-z]{8})-([0-9a-z]{14})-([0-9a-z]{14})$/

/** `repl-{controlId}-{manifestId}-{instanceId}`: the only place the format is written. */
export const formatInstanceName = (parts: InstanceNameParts): string =>
  `repl-${parts.controlId}-${parts.manifestId}-${parts.instanceId}`

export const parseInstanceName = (name: string): Either.Either<InstanceNameParts, string> => {
  const match = namePattern.exec(name)
  if (match === null) return Either.left(`"${name}" is not a SkyREPL instance name`)
  const [, controlId, manifestId, instanceId] = match as unknown as [string, string, string, string]
  return Either.right({ controlId, manifestId, instanceId })
}

export const isInstanceName = (name: string): boolean => namePattern.test(name)

/** When the instance was created, read from its name. */
export const instanceNameTime = (name: string): number | undefined =>
  Either.match(parseInstanceName(name), { onLeft: () => undefined, onRight: (p) => idTime(p.instanceId) })

/** Schema for a string that must be a well-formed instance name. */
export const InstanceName = Schema.String.pipe(
  Schema.filter((s) => isInstanceName(s) || `"${s}" is not a SkyREPL instance name`),
  Schema.brand("InstanceName")
)
export type InstanceName = typeof InstanceName.Type
