import { inflateExact, OutputChunk, ownBytes } from "@skyrepl/core"
import { Either, ParseResult, Schema, type SchemaAST } from "effect"

/**
 * How a stored output chunk holds its bytes: as written (`identity`), or compressed in the zlib
 * format (`deflate`), as the agent uploads output that compresses well. Kept compressed, a
 * chatty run's output costs the disk a fraction of its size, and writing it costs SQLite a
 * fraction of the pages.
 */
export const OutputEncoding = Schema.Literal("identity", "deflate")
export type OutputEncoding = typeof OutputEncoding.Type

/** An output row as stored. `size` is the chunk's length in its stream, whatever the encoding. */
const OutputRow = Schema.Struct({
  runId: Schema.String,
  seq: Schema.Number,
  stream: OutputChunk.fields.stream,
  offset: Schema.Number,
  size: Schema.Number,
  encoding: OutputEncoding,
  data: Schema.Uint8ArrayFromSelf
})

/** The bytes a compressed row stands for; anything but exactly `size` bytes is a corrupt row. */
const inflate = (row: typeof OutputRow.Type, ast: SchemaAST.AST): Either.Either<Uint8Array, ParseResult.ParseIssue> =>
  Either.mapLeft(inflateExact(row.data, row.size), (reason) => new ParseResult.Type(ast, row, `output chunk ${row.seq} ${reason}`))

/**
 * A stored row to the chunk readers get: its bytes as written, as a plain `Uint8Array` of their
 * own whichever driver read them (better-sqlite3 gives a Node `Buffer`, bun:sqlite a
 * `Uint8Array`).
 */
export const OutputChunkFromRow = Schema.transformOrFail(OutputRow, Schema.typeSchema(OutputChunk), {
  strict: true,
  decode: (row, _, ast) => {
    const bytes = row.encoding === "identity" ? ParseResult.succeed(ownBytes(row.data)) : inflate(row, ast)
    return ParseResult.map(bytes, (data) => new OutputChunk({ runId: row.runId, seq: row.seq, stream: row.stream, offset: row.offset, data }))
  },
  encode: (chunk, _, ast) =>
    ParseResult.fail(new ParseResult.Forbidden(ast, chunk, "output rows are written by appendOutput, not encoded from chunks"))
})
