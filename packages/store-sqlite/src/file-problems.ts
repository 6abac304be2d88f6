import { describeCause } from "@skyrepl/core"
import { accessSync, constants, lstatSync, statSync } from "node:fs"
import { basename, dirname } from "node:path"

/**
 * What is wrong, in the file system, with a database SQLite could not open or write: SQLite
 * says only SQLITE_CANTOPEN, SQLITE_READONLY or an I/O error, and names no file. Looked at
 * only after such a failure, so an open that works costs nothing; a problem found is a
 * sentence naming the path and what to do, null when none is visible.
 */
export const fileProblem = (filename: string): string | null => {
  const name = basename(filename)
  // SQLite needs a file at each of these names; a directory there (or a FIFO) it cannot use.
  for (const path of [filename, `${filename}-wal`, `${filename}-shm`]) {
    const kind = kindOf(path)
    if (kind !== null && kind !== "file") return `${path} is a ${kind}, not a file SQLite can use; move it aside`
  }
  const directory = dirname(filename)
  if (kindOf(directory) !== "directory") return null
  const directoryDenied = writeDenied(directory)
  // In WAL mode even reading makes `-wal` and `-shm` beside the database, when no other
  // process has them open: a home that became read-only after a clean exit cannot be opened.
  if (directoryDenied !== null) {
    return `the state home ${directory} is not writable (${directoryDenied}), and SQLite must create ${name}-wal and ${name}-shm there to use ${name}; make it writable, or use another state home`
  }
  const fileDenied = kindOf(filename) === "file" ? writeDenied(filename) : null
  if (fileDenied !== null) return `${filename} is not writable (${fileDenied}); make it writable, or use another state home`
  return null
}

/**
 * Why `directory` (the home of `filename`) could not be made: a file, or a file in its way, where
 * a directory must be. mkdir says EEXIST ("file already exists") or ENOTDIR without naming
 * which path is the file.
 */
export const directoryProblem = (filename: string, directory: string): string | null => {
  for (let path = directory; ; path = dirname(path)) {
    const kind = kindOf(path)
    if (kind !== null) {
      return kind === "directory"
        ? null
        : `${path} is a ${kind}, not a directory, so ${filename} cannot be made there; move it aside, or use another state home`
    }
    if (dirname(path) === path) return null
  }
}

type Kind = "file" | "directory" | "FIFO" | "socket" | "device" | "broken symbolic link"

/** What is at `path`, links followed; null when nothing is. */
const kindOf = (path: string): Kind | null => {
  try {
    const stats = statSync(path)
    if (stats.isFile()) return "file"
    if (stats.isDirectory()) return "directory"
    if (stats.isFIFO()) return "FIFO"
    if (stats.isSocket()) return "socket"
    return "device"
  } catch {
    try {
      return lstatSync(path).isSymbolicLink() ? "broken symbolic link" : null
    } catch {
      return null
    }
  }
}

/**
 * Why `path` may not be written, in the words of the system (`read-only file system`,
 * `permission denied`), or null. access(2) answers for root too: a read-only mount (EROFS) and
 * an immutable file (EPERM) refuse root, where mode bits do not.
 */
const writeDenied = (path: string): string | null => {
  try {
    accessSync(path, constants.W_OK)
    return null
  } catch (cause) {
    const text = describeCause(cause)
    // `EROFS: read-only file system, access '/x'`: the path is named already.
    return /^E[A-Z]+: ([^,]+)/.exec(text)?.[1] ?? text
  }
}
