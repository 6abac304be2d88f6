import { fstatSync, writeSync } from "node:fs"

/**
 * The CLI's standard output and error, written through their descriptors.
 *
 * On Bun, `process.stdout` and `process.stderr` are streams made on first use, and making them
 * loads node:tty, node:net and the stream modules: about 10 ms, more than a `repl run list`
 * spends on its query (bench B2). A command's output is usually a few lines, so it goes to the
 * descriptor with one `write`. The rest goes through an asynchronous writer (`Sink`):
 *
 * - past `SYNC_LIMIT` bytes: a write to a pipe whose reader is not reading would block, and
 *   with it the engine (a run's agent would lose its controller). The first bytes fit in a
 *   pipe's buffer (16 KiB or more on Linux and macOS); a larger output is queued instead;
 * - when the descriptor refuses to block (EAGAIN: left non-blocking by whoever gave it to us).
 *
 * `flush` waits until everything queued is written. On Bun that matters: `process.exit` drops
 * what `process.stdout` still holds for a slow pipe (and its write callbacks and
 * `writableLength` do not say when it is out), so the sink there is `Bun.write`, whose promise
 * settles once the bytes are written.
 *
 * A closed pipe on a direct write throws the EPIPE error; a queued write's error goes to the
 * listeners given to `onSinkError`, and nothing more is queued after it.
 */
export interface Output {
  /** Whether this is a terminal (looked up once). */
  readonly isTTY: boolean
  /** Writes `data` after everything written before it. */
  readonly write: (data: string | Uint8Array) => void
  /** Called with a queued write's error. Returns a remover. */
  readonly onSinkError: (listener: (error: unknown) => void) => () => void
  /** Resolves once everything queued is written (at once if nothing was). */
  readonly flush: () => Promise<void>
  /** Bytes queued and not yet written. */
  readonly queued: () => number
}

/** Writes bytes in the background; the promise settles once they are written. */
export interface Sink {
  readonly write: (data: Uint8Array) => Promise<unknown>
}

/** Bytes written directly before output is queued. */
export const SYNC_LIMIT = 16 * 1024

const codeOf = (error: unknown): unknown =>
  typeof error === "object" && error !== null && "code" in error ? error.code : undefined

const isTerminal = (fd: number): boolean => {
  try {
    // A terminal is a character device; only then is node:tty (the costly module) asked.
    if (!fstatSync(fd).isCharacterDevice()) return false
    return process.getBuiltinModule("node:tty").isatty(fd)
  } catch {
    return false
  }
}

export const descriptorOutput = (fd: number, openSink: () => Sink): Output => {
  let direct = 0
  let sink: Sink | null = null
  let queue: Promise<void> = Promise.resolve()
  let failed = false
  let queued = 0
  const listeners = new Set<(error: unknown) => void>()

  const enqueue = (bytes: Uint8Array): void => {
    const target = (sink ??= openSink())
    queued += bytes.length
    queue = queue
      .then(() =>
        failed
          ? undefined
          : target.write(bytes).then(
              () => undefined,
              (error: unknown) => {
                failed = true
                for (const listener of listeners) listener(error)
              }
            )
      )
      .finally(() => {
        queued -= bytes.length
      })
  }

  const write = (data: string | Uint8Array): void => {
    const bytes = typeof data === "string" ? Buffer.from(data) : data
    if (sink === null && direct + bytes.length <= SYNC_LIMIT) {
      let done = 0
      try {
        while (done < bytes.length) done += writeSync(fd, bytes, done)
        direct += done
        return
      } catch (error) {
        if (codeOf(error) !== "EAGAIN") throw error
        enqueue(bytes.subarray(done))
        return
      }
    }
    enqueue(bytes)
  }

  let terminal: boolean | null = null
  return {
    get isTTY() {
      terminal ??= isTerminal(fd)
      return terminal
    },
    write,
    onSinkError: (listener) => {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    flush: () => queue,
    queued: () => queued
  }
}

/**
 * The runtime's writer for stdout or stderr: `Bun.write` on Bun (reached through globalThis:
 * the CLI compiles without Bun's types), the stream's write and its callback elsewhere.
 */
const sinkFor = (name: "stdout" | "stderr"): Sink => {
  const bun: unknown = Reflect.get(globalThis, "Bun")
  const bunWrite: unknown = typeof bun === "object" && bun !== null ? Reflect.get(bun, "write") : undefined
  if (typeof bun === "object" && bun !== null && typeof bunWrite === "function") {
    const file: unknown = Reflect.get(bun, name)
    return { write: (data) => Promise.resolve(Reflect.apply(bunWrite, bun, [file, data])) }
  }
  const stream = process[name]
  return {
    write: (data) =>
      new Promise<void>((resolve, reject) => {
        stream.write(data, (error) => (error ? reject(error) : resolve()))
      })
  }
}

export const stdout: Output = descriptorOutput(1, () => sinkFor("stdout"))
export const stderr: Output = descriptorOutput(2, () => sinkFor("stderr"))
