import { Chunk, Duration, Effect, Either, Option, Schema, Stream } from "effect"
import { boxedPrimitiveProblem } from "../boxed.ts"
import { type OutputChunk, type Offsets, RunMachine } from "../domain/run.ts"
import { type AttachError, InvalidAttachOptions, RunNotFound } from "../errors.ts"
import { describeParseError } from "../parse-error.ts"
import type { SkyReplService } from "./service.ts"

/** What `attach` takes. A key that is none of these, here or in `from`, is refused (`InvalidAttachOptions`). */
export interface AttachOptions {
  /** Resume after these byte offsets (the next byte wanted on each stream). */
  readonly from?: Partial<Offsets>
  /** Keep following live output until the run ends (default true). */
  readonly follow?: boolean
}

/**
 * How long to wait between reads when no in-process signal arrives: output written by another
 * process (the run's owner) reaches this one only through the store. A read that finds nothing
 * new is two indexed SELECTs (tens of microseconds), so polling every 10 ms costs a follower
 * well under 1 % of a core and keeps the write-to-reader latency of `repl run attach` near
 * that of an in-process reader (50 ms made it about 30 ms at the median).
 */
const pollInterval = Duration.millis(10)
/**
 * The same for a run this engine hosts: its output and its end are signalled here, so reading
 * the store again only covers what no signal tells of (another process that claimed the run
 * after this one's lease lapsed, say).
 */
const hostedPollInterval = Duration.seconds(1)
const pageSize = 512
/**
 * Bytes of output a page is meant to hold. A chunk is up to 16 MiB (the agent's largest
 * upload), so 512 of them could be gigabytes, all in memory while a slow reader (`| less`) takes
 * them one by one: after a page of large chunks the next asks for fewer rows, and the first
 * page is small, growing while the chunks are.
 */
const pageBytes = 8 * 1024 * 1024
const firstPageSize = 4

/**
 * An offset is a count of bytes. A NaN or fractional one would be handed back as the offset of
 * the first chunk (`NaN`, `2.5`), so a reader resuming from what it got would never line up.
 */
const Offset = Schema.Number.pipe(Schema.int(), Schema.nonNegative()).annotations({
  message: (issue) => `must be a whole number of bytes, 0 or more, not ${String(issue.actual)}`
})
const ValidAttachOptions = Schema.Struct({
  from: Schema.optional(
    Schema.Struct({ stdout: Schema.optional(Offset), stderr: Schema.optional(Offset) }).annotations({
      message: (issue) => `from must be offsets ({ stdout?, stderr? }), not ${JSON.stringify(issue.actual)}`
    })
  ),
  follow: Schema.optional(Schema.Boolean)
}).annotations({ message: (issue) => `attach options must be an object, not ${String(issue.actual)}` })

const ATTACH_OPTIONS: ReadonlyArray<keyof AttachOptions> = ["from", "follow"]
const STREAMS: ReadonlyArray<keyof Offsets> = ["stdout", "stderr"]

/** The first key of `given` that is none of `known`, said as a message; undefined when none. */
const unknownKey = (given: object, known: ReadonlyArray<string>, what: string, where = ""): string | undefined => {
  const key = Object.keys(given).find((each) => !known.includes(each))
  return key === undefined ? undefined : `${where}${JSON.stringify(key)} is not ${what} (${known.join(", ")})`
}

/**
 * Streams a run's output from the store: replay from `from`, then live. Each chunk is cut to
 * start exactly at the wanted offset, so a resumed reader sees no gap and no duplicate.
 * `known`: the caller has just recorded the run (a launch's own handle), so it is not looked up
 * first.
 */
export const attachWith = (
  engine: SkyReplService,
  runId: string,
  options: AttachOptions = {},
  known = false
): Stream.Stream<OutputChunk, AttachError> =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      const boxed = boxedPrimitiveProblem(options, "attach options")
      if (boxed !== null) return yield* new InvalidAttachOptions({ message: boxed })
      const decoded = Schema.decodeUnknownEither(ValidAttachOptions)(options)
      if (Either.isLeft(decoded)) return yield* new InvalidAttachOptions({ message: describeParseError(decoded.left) })
      // A misspelt key was dropped: `{ form: { stdout: 7 } }` replayed from the first byte, and
      // `{ from: { stdout: 7, sterr: 3 } }` all of stderr.
      const unknown =
        unknownKey(options, ATTACH_OPTIONS, "an attach option") ??
        (options.from === undefined ? undefined : unknownKey(options.from, STREAMS, "a stream", "from: "))
      if (unknown !== undefined) return yield* new InvalidAttachOptions({ message: unknown })
      const { from, follow: followGiven } = decoded.right
      if (!known && Option.isNone(yield* engine.store.getRun(runId))) return yield* new RunNotFound({ runId })
      const nextChange = yield* engine.changes.listen(runId)
      const follow = followGiven ?? true
      const next = { stdout: from?.stdout ?? 0, stderr: from?.stderr ?? 0 }
      let afterSeq = 0
      let rows = firstPageSize
      /**
       * The last read came back short of its page: it had every chunk stored then. For a run
       * hosted here, nothing new comes before a signal, so the next read waits for one instead
       * of finding nothing first (a read per chunk a following reader is woken for, instead of
       * two; bench B3 and B4).
       */
      let caughtUp = false

      const cut = (chunk: OutputChunk): OutputChunk | null => {
        const wanted = next[chunk.stream]
        const end = chunk.offset + chunk.data.length
        if (end <= wanted) return null
        next[chunk.stream] = end
        if (chunk.offset >= wanted) return chunk
        return { ...chunk, offset: wanted, data: chunk.data.subarray(wanted - chunk.offset) }
      }

      /** Waits for a signal of this run, or the poll interval; true when it was the interval. */
      const waitForChange = Effect.suspend(() =>
        nextChange.pipe(Effect.timeout(engine.live.has(runId) ? hostedPollInterval : pollInterval), Effect.as(false), Effect.orElseSucceed(() => true))
      )

      /** The next chunks after `afterSeq`, cut to what is wanted; empty when nothing new is stored. */
      const readNew = Effect.gen(function* () {
        while (true) {
          const chunks = yield* engine.store.readOutput(runId, afterSeq, rows)
          caughtUp = chunks.length < rows
          if (chunks.length === 0) return []
          const largest = chunks.reduce((most, chunk) => Math.max(most, chunk.data.length), 1)
          rows = Math.max(1, Math.min(pageSize, rows * 8, Math.floor(pageBytes / largest)))
          afterSeq = chunks[chunks.length - 1]!.seq
          const out = chunks.map(cut).filter((c): c is OutputChunk => c !== null)
          if (out.length > 0) return out
        }
      })

      const step: Effect.Effect<Chunk.Chunk<OutputChunk>, Option.Option<AttachError>> = Effect.gen(function* () {
        let polled = false
        while (true) {
          // A run hosted here has its end signalled here, and only once every byte its agent
          // read is stored (or known lost): seen ended before a read that finds nothing, it
          // has nothing more to give. The store is then not asked about the run at all.
          const live = engine.live.get(runId)
          const endedHere = live !== undefined && (yield* live.ended)
          // Its end is signalled too (finishRun), after its last byte is stored.
          if (caughtUp && follow && live !== undefined && !endedHere) {
            caughtUp = false
            polled = yield* waitForChange
            continue
          }
          const out = yield* readNew
          if (out.length > 0) return Chunk.fromIterable(out)
          if (!follow || endedHere) return yield* Effect.fail(Option.none())
          // Nothing new: is the run over? Once it is, all its output is stored, so a read made
          // after seeing the end state and still empty really is the end. A run hosted here is
          // looked up only when no signal came for a whole poll interval: another process may
          // have taken it over (its lease lapsed), and then only the store tells.
          if (live === undefined || polled) {
            const run = yield* engine.store.getRun(runId)
            if (Option.isNone(run) || RunMachine.isTerminal(run.value.state)) {
              const rest = yield* readNew
              if (rest.length > 0) return Chunk.fromIterable(rest)
              return yield* Effect.fail(Option.none())
            }
          }
          caughtUp = false
          polled = yield* waitForChange
        }
      }).pipe(Effect.mapError((e) => (Option.isOption(e) ? e : Option.some(e))))

      return Stream.repeatEffectChunkOption(step)
    })
  )
