import type { OutputChunk, OutputStream } from "@skyrepl/core"
import { Effect, Stream } from "effect"

// The global TextDecoder, not node:util's: importing node:util costs a `repl` command about 2 ms
// of start-up on Bun (bench B2), and both runtimes have the global.
type Decoder = InstanceType<typeof TextDecoder>

/**
 * Output chunks as JSON Lines objects (`repl run --json`, `repl run attach --json`). Each
 * stream's bytes go through a streaming UTF-8 decoder, so a character split between two chunks
 * is given whole in the later one instead of as two replacement characters; bytes that are not
 * UTF-8 at all still become U+FFFD. `bytes` is the chunk's length in its stream, so `offset +
 * bytes` is where the stream's next chunk starts, whatever `data`'s length in characters.
 */
export const jsonOutput = (fields: Readonly<Record<string, unknown>> = {}) => {
  const decoders = new Map<OutputStream, Decoder>()
  const ends = new Map<OutputStream, number>()
  const decoderOf = (stream: OutputStream): Decoder => {
    let decoder = decoders.get(stream)
    if (decoder === undefined) {
      decoder = new TextDecoder("utf-8")
      decoders.set(stream, decoder)
    }
    return decoder
  }
  return {
    /** The line for one chunk. */
    line: (chunk: OutputChunk): string => {
      ends.set(chunk.stream, chunk.offset + chunk.data.length)
      const data = decoderOf(chunk.stream).decode(chunk.data, { stream: true })
      return JSON.stringify({ ...fields, stream: chunk.stream, offset: chunk.offset, bytes: chunk.data.length, data }) + "\n"
    },
    /**
     * Lines for streams that ended inside a character: what is left, as U+FFFD, at the stream's
     * end with `bytes` 0 (those bytes were counted in the chunk that held them).
     */
    flush: (): ReadonlyArray<string> =>
      Array.from(decoders, ([stream, decoder]) => {
        const data = decoder.decode()
        return data === "" ? null : JSON.stringify({ ...fields, stream, offset: ends.get(stream) ?? 0, bytes: 0, data }) + "\n"
      }).filter((line) => line !== null)
  }
}

interface Writer {
  readonly write: (data: string | Uint8Array) => void
}

/**
 * A run's output as a command prints it (`repl run`, `repl run attach`): each chunk's bytes to
 * stdout or stderr as its stream, or with `json` one `output` line per chunk on stdout (and the
 * lines `flush` gives once the output ends).
 */
export const printOutput = <E, R>(
  output: Stream.Stream<OutputChunk, E, R>,
  options: {
    readonly json: boolean
    readonly runId: string
    readonly stdout: Writer
    readonly stderr: Writer
    /** Waits, after each chunk, until the output written so far has room for more. */
    readonly room?: Effect.Effect<void>
  }
): Effect.Effect<void, E, R> => {
  const { stdout, stderr } = options
  const json = jsonOutput({ type: "output", runId: options.runId })
  const print = options.json
    ? (chunk: OutputChunk) => stdout.write(json.line(chunk))
    : (chunk: OutputChunk) => (chunk.stream === "stdout" ? stdout : stderr).write(chunk.data)
  return Effect.zipRight(
    Stream.runForEach(output, (chunk) => Effect.zipRight(Effect.sync(() => print(chunk)), options.room ?? Effect.void)),
    Effect.sync(() => {
      if (options.json) for (const line of json.flush()) stdout.write(line)
    })
  )
}
