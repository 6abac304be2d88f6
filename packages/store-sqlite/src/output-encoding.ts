import { inflateExact, OutputChunk, ownBytes } from "@skyrepl/core"
import { Either, ParseResult, Schema, type SchemaAST } from "effect"

/**
 * How a stored output chunk holds its bytes: as written (`identity`), or DEFLATE-compressed
 * (`deflate`), kept as the agent uploaded it: in the zlib wrapper (Content-Encoding `deflate`)
 * or the gzip one (`gzip`), which a reader tells apart by their first bytes. Kept compressed, a
 * chatty run's output costs the disk a fraction of its size, and writing it costs SQLite a
 * fraction of the pages. (One value for both wrappers: a value of its own for gzip would have
 * meant rebuilding every existing output table for its CHECK constraint; see decisions.md.)
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
  Either.mapLeft(inflateExact(row.data, row.size, "either"), (reason) => new ParseResult.Type(ast, row, `output chunk ${row.seq} ${reason}`))

/**
 * The inflated bytes of the compressed chunks one store wrote last, by `seq`, within a byte
 * budget (the oldest go first). The hub has just inflated every upload to check it; the reader
 * in the same process that follows the run (attach) is then handed those very bytes instead of
 * inflating the chunk again, which was most of the controller's remaining work per byte in
 * bench B4. Each entry goes to one reader only, so no two readers share an array (a later
 * reader inflates its own copy from the row), and `appendOutput`'s caller gives up the array it
 * passed (see Store.appendOutput). A row matches an entry only with the same run, stream,
 * offset and size.
 */
export class RecentChunks {
  private readonly entries = new Map<number, { readonly runId: string; readonly stream: string; readonly offset: number; readonly data: Uint8Array }>()
  private bytes = 0

  constructor(private readonly budget: number) {}

  remember(seq: number, runId: string, stream: string, offset: number, data: Uint8Array): void {
    if (data.length > this.budget || this.entries.has(seq)) return
    this.entries.set(seq, { runId, stream, offset, data })
    this.bytes += data.length
    for (const [oldest, entry] of this.entries) {
      if (this.bytes <= this.budget) break
      this.entries.delete(oldest)
      this.bytes -= entry.data.length
    }
  }

  /** The bytes of `row`, if this store wrote it lately and no reader took them yet. */
  take(row: { readonly seq: number; readonly runId: string; readonly stream: string; readonly offset: number; readonly size: number }): Uint8Array | undefined {
    const entry = this.entries.get(row.seq)
    if (entry === undefined || entry.runId !== row.runId || entry.stream !== row.stream) return undefined
    if (entry.offset !== row.offset || entry.data.length !== row.size) return undefined
    this.entries.delete(row.seq)
    this.bytes -= entry.data.length
    return entry.data
  }
}

/**
 * A stored row to the chunk readers get: its bytes as written, as a plain `Uint8Array` of their
 * own whichever driver read them (better-sqlite3 gives a Node `Buffer`, bun:sqlite a
 * `Uint8Array`). A compressed row is taken from `recent` when it is there, else inflated.
 */
export const outputChunkFromRow = (recent?: RecentChunks) =>
  Schema.transformOrFail(OutputRow, Schema.typeSchema(OutputChunk), {
    strict: true,
    decode: (row, _, ast) => {
      const kept = row.encoding === "identity" ? undefined : recent?.take(row)
      const bytes =
        row.encoding === "identity" ? ParseResult.succeed(ownBytes(row.data)) : kept !== undefined ? ParseResult.succeed(kept) : inflate(row, ast)
      return ParseResult.map(bytes, (data) => new OutputChunk({ runId: row.runId, seq: row.seq, stream: row.stream, offset: row.offset, data }))
    },
    encode: (chunk, _, ast) =>
      ParseResult.fail(new ParseResult.Forbidden(ast, chunk, "output rows are written by appendOutput, not encoded from chunks"))
  })
