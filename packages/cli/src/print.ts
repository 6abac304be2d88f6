import { printable } from "./printable.ts"
import { stderr, stdout } from "./stdio.ts"

// Kept apart from base-command.ts, which loads Effect and the engine: entry.ts answers
// `repl --version` with `printAndEnd` before any of those load.

/** A reader gone (`repl … | head -1`): the status of any filter in a pipeline killed by SIGPIPE. */
export const BROKEN_PIPE = 141

export const isBrokenPipe = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "code" in error && error.code === "EPIPE"

/** Output that could not be written for a reason other than a reader gone (a full disk, say). */
export const WRITE_FAILED = 1

/** The one line for a write that failed: `cannot write to stdout: ENOSPC: no space left on device, write`. */
export const writeFailure = (name: "stdout" | "stderr", error: unknown): string =>
  `cannot write to ${name}: ${(error instanceof Error ? error.message : String(error)).split("\n")[0]}`

/**
 * Says a failure on stderr, if stderr can still take it (a closed terminal cannot). As one line
 * of printable text: the line often quotes what the user gave (`no run with id "…"`), and a
 * newline there cut the line short, an escape sequence reached the terminal.
 */
export const tellFailure = (line: string): void => {
  try {
    stderr.write(`repl: ${printable(line)}\n`)
  } catch {
    // stderr is what failed: the exit status is all that is left to say it.
  }
}

/**
 * Help, the version (or any text a command prints and ends with) on stdout: 0, or 141 quietly
 * when the reader is gone (`repl --help | true`), as for a command's output; it used to be a
 * stack trace. Any other failure (a full disk) is one line on stderr and 1.
 */
export const printAndEnd = (text: string): number => {
  let broken = false
  let failed: unknown = null
  const note = (error: unknown) => {
    if (isBrokenPipe(error)) broken = true
    else failed ??= error
  }
  const stop = stdout.onSinkError(note)
  try {
    stdout.write(text)
  } catch (error) {
    note(error)
  } finally {
    stop()
  }
  if (broken) return BROKEN_PIPE
  if (failed === null) return 0
  tellFailure(writeFailure("stdout", failed))
  return WRITE_FAILED
}
