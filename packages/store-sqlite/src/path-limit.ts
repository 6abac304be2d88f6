import { realpathSync } from "node:fs"
import { basename, dirname, join, resolve } from "node:path"

/**
 * The longest database path SQLite opens, in bytes of UTF-8: its unix VFS has room for 512
 * bytes of path, and it refuses a database whose rollback journal (the path and `-journal`) would
 * not fit. Found by experiment with both drivers the store uses (bun:sqlite on Bun, better-sqlite3
 * on Node): 504 bytes opens, 505 is SQLITE_CANTOPEN, which says nothing of why.
 */
export const MAX_PATH_BYTES = 504

/**
 * How long `filename` is as SQLite measures it: absolute, with the symbolic links of the part
 * that exists resolved, as SQLite resolves them (a short link to a long directory is refused).
 * The part not made yet is counted as given.
 */
export const pathBytes = (filename: string): number => {
  let existing = resolve(filename)
  const rest: Array<string> = []
  for (;;) {
    try {
      return Buffer.byteLength(join(realpathSync(existing), ...rest))
    } catch {
      const parent = dirname(existing)
      if (parent === existing) return Buffer.byteLength(resolve(filename))
      rest.unshift(basename(existing))
      existing = parent
    }
  }
}
