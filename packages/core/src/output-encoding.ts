import { Either } from "effect"
import { describeCause } from "./cause-message.ts"

/**
 * node:zlib, loaded on the first compressed chunk: importing it loads node:stream with it (about
 * 8 ms of a CLI command on Bun, bench B2), and most processes (a listing, a cancel) inflate
 * nothing.
 */
let zlib: typeof import("node:zlib") | undefined
const zlibModule = (): typeof import("node:zlib") => (zlib ??= process.getBuiltinModule("node:zlib"))

/**
 * The wrappers around DEFLATE data: `zlib` (Adler-32, HTTP's `deflate` content-coding), `gzip`
 * (CRC-32, HTTP's `gzip`), or `either`, told apart by their first bytes as zlib's own `unzip`
 * does (a zlib header's first byte is never gzip's 0x1f).
 */
export type DeflateWrapper = "zlib" | "gzip" | "either"

const inflater = (wrapper: DeflateWrapper): typeof import("node:zlib").inflateSync => {
  const z = zlibModule()
  return wrapper === "gzip" ? z.gunzipSync : wrapper === "either" ? z.unzipSync : z.inflateSync
}

/**
 * Content encodings an output upload may use, told to the agent when it registers, in the
 * order the controller prefers them: the agent takes the first it knows. Both are DEFLATE;
 * `gzip` comes first because its CRC-32 costs zlib about a third of what the `deflate` (zlib
 * format) Adler-32 does, which was a quarter of the agent's compressing (bench B4). The agent
 * compresses what compresses well, so a chatty run crosses the network, and lands in the
 * store, at a fraction of its size.
 */
export const OUTPUT_ENCODINGS: ReadonlyArray<string> = ["gzip", "deflate"]

/**
 * An upload's bytes as the run wrote them, and the compressed form when that is what came:
 * DEFLATE data in the zlib or the gzip wrapper, as the agent sent it.
 */
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
 * Inflates DEFLATE data in `wrapper` that must come to exactly `size` bytes, into one buffer of
 * that size: node:zlib otherwise inflates in 16 KiB pieces and joins them, which cost more than
 * the inflating.
 */
export const inflateExact = (deflated: Uint8Array, size: number, wrapper: DeflateWrapper): Either.Either<Uint8Array, string> => {
  if (size === 0) return Either.left("a compressed chunk cannot be empty")
  try {
    const bytes = inflater(wrapper)(deflated, { chunkSize: Math.max(64, size), maxOutputLength: size })
    if (bytes.length !== size) return Either.left(`inflates to ${bytes.length} bytes, not ${size}`)
    return Either.right(ownBytes(bytes))
  } catch (cause) {
    if (cause instanceof RangeError) return Either.left(`inflates to more than ${size} bytes`)
    const format = wrapper === "either" ? "zlib or gzip" : wrapper
    return Either.left(`is not ${format} data: ${describeCause(cause)}`)
  }
}

/**
 * The agent's rule for what is worth compressing (DEFLATE_MIN, DEFLATE_SAMPLE and DEFLATE_KEEP
 * in agent/skyrepl_agent.py), kept alike so a run is stored the same whichever side compressed.
 */
const COMPRESS_MIN = 4096
const COMPRESS_SAMPLE = 64 * 1024
const COMPRESS_KEEP = 0.9

/**
 * Whether this runtime's zlib compresses output faster than the agent's Python does, so that a
 * controller should compress for an agent on its own machine (SessionOptions.compressOutput).
 * Per 4 MiB at level 1 (bench B4's zeros; log text): Bun about 1 ms and 17 ms, its zlib taking
 * a faster algorithm at that level; CPython's zlib 5 ms and 32 ms; Node's 3 ms and 43 ms. On
 * Node the agent keeps compressing: the controller would gain nothing, and its one thread would
 * spend longer on text.
 */
export const RUNTIME_COMPRESSES_FASTER: boolean = process.versions["bun"] !== undefined

/**
 * Output an agent uploaded as written, compressed for the store as the agent would have: DEFLATE
 * level 1 in gzip's wrapper, for an upload of at least 4 KiB whose first 64 KiB shrink below 90 %
 * of their size; `undefined` for one to keep as it is. On the calling thread: zlib's thread pool
 * costs more per upload than it spares (B4 fell from about 590 to 490 MiB/s through it), so an
 * upload of log text holds the thread about 17 ms per 4 MiB. Should compressing fail (out of
 * memory), the bytes are kept as written, as the agent does.
 */
export const compressForStore = (data: Uint8Array): Uint8Array | undefined => {
  if (data.length < COMPRESS_MIN) return undefined
  const { gzipSync } = zlibModule()
  try {
    const sample = data.length > COMPRESS_SAMPLE ? data.subarray(0, COMPRESS_SAMPLE) : data
    const compressedSample = gzipSync(sample, { level: 1 })
    if (compressedSample.length > COMPRESS_KEEP * sample.length) return undefined
    return sample === data ? compressedSample : gzipSync(data, { level: 1 })
  } catch {
    return undefined
  }
}

/** The wrapper each accepted Content-Encoding names; `x-gzip` is gzip (RFC 9110, 8.4.1.3). */
const uploadWrappers: Readonly<Record<string, DeflateWrapper>> = { gzip: "gzip", "x-gzip": "gzip", deflate: "zlib" }

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
  const wrapper = Object.hasOwn(uploadWrappers, name) ? uploadWrappers[name] : undefined
  if (wrapper === undefined) {
    return Either.left({ status: 415, error: `unsupported content-encoding "${name}" (${OUTPUT_ENCODINGS.join(", ")} or identity)` })
  }
  if (size === undefined) return Either.left({ status: 400, error: "a compressed upload must name its inflated size" })
  if (size > limit) return Either.left({ status: 413, error: `output of ${size} bytes is over the ${limit}-byte limit` })
  return Either.match(inflateExact(body, size, wrapper), {
    onLeft: (reason) => Either.left({ status: 400, error: `the ${name} output ${reason}` }),
    onRight: (data) => Either.right({ data, deflated: body })
  })
}
