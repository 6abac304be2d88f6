import { realpathSync } from "node:fs"
import { basename, dirname, join, resolve } from "node:path"

/**
 * The longest database path SQLite opens, in bytes of UTF-8: its unix VFS has room for 512
 * bytes of path, and it refuses a database whose rollback journal (the path and `-journal`) would
 * not fit (its pager: the full path and 8 more bytes may not pass the VFS's 512). Found by
 * experiment with both drivers the store uses (bun:sqlite on Bun, better-sqlite3 on Node): 504
 * bytes opens, 505 is SQLITE_CANTOPEN, which says nothing of why.
 *
 * The limit on the database covers every file SQLite opens beside it: `-wal` and `-shm` are 4
 * bytes longer, and SQLite names them after the database's resolved path, so at 504 they are 508,
 * within the 512 (at 504 the store runs in WAL mode with both made; a test checks it). The other
 * files of a home (`control-id` and its temporary copy) are not SQLite's and have the system's
 * 4096.
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
