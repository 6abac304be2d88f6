import { fstatSync, writeSync } from "node:fs"

/**
 * The CLI's standard output and error, written through their descriptors.
 *
 * On Bun, `process.stdout` and `process.stderr` are streams made on first use, and making them
 * loads node:tty, node:net and the stream modules: about 10 ms, more than a `repl run list`
 * spends on its query (bench B2). A command's output is usually a few lines, so it goes to
 * the descriptor with one `write`, and the streams are made only when needed:
 *
 * - past `SYNC_LIMIT` bytes: a write to a pipe whose reader is not reading would block, and
 *   with it the engine (a run's agent would lose its controller). The first bytes fit in a
 *   pipe's buffer (16 KiB or more on Linux and macOS); a larger output continues through the
 *   stream, which buffers instead;
 * - when the descriptor refuses to block (EAGAIN: left non-blocking by whoever gave it to us).
 *
 * A closed pipe on a direct write throws the EPIPE error; once a stream is made, its errors go
 * to the listeners given to `onStreamError`.
 */
export interface Output {
  /** Whether this is a terminal (looked up once). */
  readonly isTTY: boolean
  /** Writes `data` after everything written before it. */
  readonly write: (data: string | Uint8Array) => void
  /** Called with the stream's errors, if a stream is ever made. Returns a remover. */
  readonly onStreamError: (listener: (error: unknown) => void) => () => void
  /** Resolves once what was handed to a stream has left it (at once if none was made). */
  readonly flush: () => Promise<void>
}

/** What is used of `process.stdout` or `stderr` once a stream is needed. */
export interface OutputStream {
  readonly write: (data: string | Uint8Array, callback?: () => void) => boolean
  readonly on: (event: "error", listener: (error: unknown) => void) => unknown
}

/** Bytes written directly before output continues through the stream. */
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

export const descriptorOutput = (fd: number, openStream: () => OutputStream): Output => {
  let direct = 0
  let stream: OutputStream | null = null
  let terminal: boolean | null = null
  const listeners = new Set<(error: unknown) => void>()
  const onError = (error: unknown) => {
    for (const listener of listeners) listener(error)
  }

  const toStream = (): OutputStream => {
    if (stream === null) {
      stream = openStream()
      stream.on("error", onError)
    }
    return stream
  }

  const write = (data: string | Uint8Array): void => {
    const bytes = typeof data === "string" ? Buffer.from(data) : data
    if (stream === null && direct + bytes.length <= SYNC_LIMIT) {
      let done = 0
      try {
        while (done < bytes.length) done += writeSync(fd, bytes, done)
        direct += done
        return
      } catch (error) {
        if (codeOf(error) !== "EAGAIN") throw error
        direct += done
        toStream().write(bytes.subarray(done))
        return
      }
    }
    toStream().write(bytes)
  }

  return {
    get isTTY() {
      terminal ??= isTerminal(fd)
      return terminal
    },
    write,
    onStreamError: (listener) => {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    flush: () =>
      new Promise<void>((resolve) => {
        if (stream === null) resolve()
        else stream.write("", () => resolve())
      })
  }
}

export const stdout: Output = descriptorOutput(1, () => process.stdout)
export const stderr: Output = descriptorOutput(2, () => process.stderr)
