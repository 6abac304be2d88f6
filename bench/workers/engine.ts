/**
 * What the measuring processes share: the state home they are given, and the engine they time,
 * built as a user would (the local provider and the SQLite store in that home).
 */
import { SkyRepl } from "@skyrepl/core"
import { LocalProvider } from "@skyrepl/provider-local"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { ManagedRuntime } from "effect"
import { join } from "node:path"

/** BENCH_HOME: the scratch home the benchmark created for this process. */
export const benchHome = (): string => {
  const home = process.env["BENCH_HOME"] ?? ""
  if (home === "") throw new Error("BENCH_HOME is required")
  return home
}

export const localEngine = (home: string) =>
  SkyRepl.layer({
    providers: [LocalProvider.layer({ home })],
    store: SqliteStore.layer({ filename: join(home, "state.db") }),
    config: { home }
  })

/** An engine on `home`, started (store opened, first reaping done) before anything is timed. */
export const startedRuntime = async (home: string) => {
  const runtime = ManagedRuntime.make(localEngine(home))
  await runtime.runtime()
  return runtime
}
