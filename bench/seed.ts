/**
 * Fills a state home's store with launches through the store's own `createLaunch`, so the rows
 * are exactly what SkyREPL writes; then moves them all to the wanted states with one UPDATE per
 * table (walking 10,000 records through every transition one by one would take longer than
 * the benchmarks that use them).
 */
import type { Instance, StoreService } from "@skyrepl/core"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { Effect } from "effect"
import { join } from "node:path"
import { launchRecords } from "../packages/core/src/testing/records.ts"
import { makeClient } from "../packages/store-sqlite/src/client.ts"

export interface SeedOptions {
  /** How many launches (manifest + instance + run each). */
  readonly count: number
  /** State of every instance record. */
  readonly instanceState?: Instance["state"]
  /** Lease expiry of every instance record (null: none). */
  readonly leaseExpiresAt?: number | null
  /** Owner written on every record. */
  readonly owner?: string
}

/** Writes `count` launches, oldest first; returns their instance names. */
export const seedLaunches = (store: StoreService, options: SeedOptions): Effect.Effect<ReadonlyArray<string>, unknown> =>
  Effect.gen(function* () {
    const names: Array<string> = []
    const base = Date.now() - options.count * 1000
    const owner = options.owner ?? "seed0000000000"
    for (let i = 0; i < options.count; i++) {
      const at = base + i * 1000
      const { manifest, instance, run } = launchRecords(store.controlId, {
        controllerId: owner,
        provider: "local",
        spec: "sandbox",
        providerRef: String(100000 + i),
        command: `echo seeded run ${i}`,
        env: {},
        leaseExpiresAt: options.leaseExpiresAt === undefined ? null : options.leaseExpiresAt,
        createdAt: at
      })
      names.push(instance.name)
      yield* store.createLaunch(manifest, instance, run)
    }
    return names
  })

/** Moves every seeded record to its final state: runs succeeded, instances as asked. */
const settle = (filename: string, options: SeedOptions) =>
  Effect.scoped(
    Effect.gen(function* () {
      const sql = yield* makeClient(filename)
      const state = options.instanceState ?? "terminated"
      yield* sql.unsafe("UPDATE runs SET state = 'succeeded', exit_code = 0, started_at = created_at + 50, ended_at = created_at + 80")
      yield* sql.unsafe("UPDATE instances SET state = ?", [state])
      if (state === "terminated") yield* sql.unsafe("UPDATE manifests SET state = 'closed'")
    })
  )

/** Opens `home`'s store, seeds it, closes it. */
export const seedHome = (home: string, options: SeedOptions): Promise<ReadonlyArray<string>> => {
  const filename = join(home, "state.db")
  return Effect.runPromise(
    Effect.scoped(Effect.flatMap(SqliteStore.makeScoped({ filename }), (store) => seedLaunches(store, options))).pipe(
      Effect.tap(() => settle(filename, options))
    )
  )
}
