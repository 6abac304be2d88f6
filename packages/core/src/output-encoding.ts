import { Either } from "effect"

/**
 * node:zlib, loaded on the first compressed chunk: importing it loads node:stream with it (about
 * 8 ms of a CLI command on Bun, bench B2), and most processes (a listing, a cancel) inflate
 * nothing.
 */
let zlib: typeof import("node:zlib") | undefined
const inflateSync: typeof import("node:zlib").inflateSync = (buffer, options) =>
  (zlib ??= process.getBuiltinModule("node:zlib")).inflateSync(buffer, options)

/**
 * Content encodings an output upload may use, told to the agent when it registers. `deflate`
 * is the zlib format (as HTTP defines it); the agent compresses what compresses well, so a
 * chatty run crosses the network, and lands in the store, at a fraction of its size.
 */
export const OUTPUT_ENCODINGS: ReadonlyArray<string> = ["deflate"]

/** An upload's bytes as the run wrote them, and the compressed form when that is what came. */
export interface UploadedOutput {
  readonly data: Uint8Array
  readonly deflated: Uint8Array | undefined
}

export interface RefusedUpload {
  readonly status: 400 | 413 | 415
  readonly error: string
}

/**
 * Bytes as a plain `Uint8Array` over memory of their own. Node's `Buffer` (from zlib, from
 * better-sqlite3) becomes a plain view when it fills its own memory; one that does not (a small
 * one from Node's shared pool) is copied, so no caller ever holds a view, through `.buffer`, of
 * memory that is not theirs.
 */
export const ownBytes = (bytes: Uint8Array): Uint8Array => {
  if (bytes.byteOffset !== 0 || bytes.buffer.byteLength !== bytes.length) return new Uint8Array(bytes)
  return bytes.constructor === Uint8Array ? bytes : new Uint8Array(bytes.buffer, 0, bytes.length)
}

/**
 * Inflates zlib data that must come to exactly `size` bytes, into one buffer of that size:
 * node:zlib otherwise inflates in 16 KiB pieces and joins them, which cost more than the
 * inflating.
 */
export const inflateExact = (deflated: Uint8Array, size: number): Either.Either<Uint8Array, string> => {
  if (size === 0) return Either.left("a compressed chunk cannot be empty")
  try {
    const bytes = inflateSync(deflated, { chunkSize: Math.max(64, size), maxOutputLength: size })
    if (bytes.length !== size) return Either.left(`inflates to ${bytes.length} bytes, not ${size}`)
    return Either.right(ownBytes(bytes))
  } catch (cause) {
    if (cause instanceof RangeError) return Either.left(`inflates to more than ${size} bytes`)
    return Either.left(`is not zlib data: ${cause instanceof Error ? cause.message : String(cause)}`)
  }
}

/**
 * The bytes of an output upload whose `Content-Encoding` header is `encoding`. A compressed
 * upload names its inflated `size`; it is inflated once here, into exactly that much memory,
 * and only when `size` is within `limit` (the largest upload the controller takes).
 */
export const decodeUpload = (
  encoding: string | undefined,
  size: number | undefined,
  body: Uint8Array,
  limit: number
): Either.Either<UploadedOutput, RefusedUpload> => {
  const name = (encoding ?? "identity").trim().toLowerCase()
  if (name === "identity" || name === "") return Either.right({ data: body, deflated: undefined })
  if (name !== "deflate") return Either.left({ status: 415, error: `unsupported content-encoding "${name}" (deflate or identity)` })
  if (size === undefined) return Either.left({ status: 400, error: "a deflated upload must name its inflated size" })
  if (size > limit) return Either.left({ status: 413, error: `output of ${size} bytes is over the ${limit}-byte limit` })
  return Either.match(inflateExact(body, size), {
    onLeft: (reason) => Either.left({ status: 400, error: `the deflated output ${reason}` }),
    onRight: (data) => Either.right({ data, deflated: body })
  })
}
