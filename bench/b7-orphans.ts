/**
 * B7: `scanOrphans` over 10,000 provider resources against 10,000 store records, against a
 * plain set difference of the two name lists. The provider is an in-memory one (its `list` is
 * free), so the figure is the engine's own work: reading the store, classifying, reporting.
 */
import {
  formatInstanceName,
  newId,
  PROVIDER_SPEC_VERSION,
  Provider,
  type ProviderInstance,
  type ProviderService,
  scanOrphans,
  SkyRepl
} from "@skyrepl/core"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { Effect, Layer, ManagedRuntime } from "effect"
import { join } from "node:path"
import { type Benchmark, finishHome, now, scratchHome, stats } from "./harness.ts"
import { seedHome } from "./seed.ts"

const fakeProvider = (resources: ReadonlyArray<ProviderInstance>): ProviderService => ({
  id: "bench",
  specVersion: PROVIDER_SPEC_VERSION,
  capabilities: { isolation: "vm", spot: false, snapshots: false, regions: false, warmPool: false, ssh: false },
  parseSpec: () => Effect.succeed({ provider: "bench", canonical: "", region: null, attributes: {} }),
  spawn: () => Effect.die("the sweep benchmark never spawns"),
  describe: () => Effect.succeed("running"),
  list: () => Effect.succeed(resources),
  terminate: () => Effect.void
})

export const b7: Benchmark = {
  id: "B7",
  title: "scanOrphans over 10,000 resources and 10,000 records",
  run: async (ctx) => {
    const size = ctx.smoke ? 500 : 10_000
    const home = scratchHome("b7")
    try {
      // Store: `size` records with live leases (tracked, not orphans) whose instances the
      // provider still has for one half; the provider's other half is untracked.
      const seeded = await seedHome(home, { count: size, instanceState: "allocated", leaseExpiresAt: Date.now() + 3_600_000 })
      const controlId = seeded[0]!.split("-")[1]!
      const tracked = seeded.slice(0, size / 2)
      const untracked = Array.from({ length: size / 2 }, () => {
        const t = Date.now() - 3_600_000
        return formatInstanceName({ controlId, manifestId: newId(t), instanceId: newId(t) })
      })
      const resources: Array<ProviderInstance> = [...tracked, ...untracked].map((name, i) => ({
        name,
        providerRef: `i-${i.toString(16).padStart(17, "0")}`,
        region: null,
        state: "running",
        createdAt: null
      }))
      const runtime = ManagedRuntime.make(
        SkyRepl.layer({
          providers: [Layer.succeed(Provider, fakeProvider(resources))],
          store: SqliteStore.layer({ filename: join(home, "state.db") }),
          config: { home, defaultProvider: "bench" }
        })
      )
      const rounds = ctx.smoke ? 2 : 15
      const scan: Array<number> = []
      const diff: Array<number> = []
      let orphans = 0
      try {
        await runtime.runPromise(Effect.void)
        for (let i = 0; i < rounds + 2; i++) {
          const t0 = now()
          const report = await runtime.runPromise(scanOrphans({ providers: ["bench"] }))
          const t1 = now()
          // The floor: which provider names the store does not know.
          const known = new Set(seeded)
          const missing = resources.filter((r) => !known.has(r.name)).length
          const t2 = now()
          if (i >= 2) {
            scan.push(t1 - t0)
            diff.push(t2 - t1)
          }
          orphans = report.orphans.length
          if (missing !== untracked.length || report.resources !== resources.length) throw new Error("the sweep saw something else than was set up")
        }
      } finally {
        await runtime.dispose()
      }
      const s = stats(scan)
      const d = stats(diff)
      return {
        id: "B7",
        title: b7.title,
        baseline: "a plain Set difference of the two name lists, in the same process",
        figures: [
          { what: `scanOrphans, ${resources.length} resources vs ${size} records (${orphans} orphans)`, unit: "ms", stats: s },
          { what: "set difference of the names", unit: "ms", stats: d }
        ],
        ratios: [
          { what: "scanOrphans / set difference (medians)", value: s.median / d.median, target: "(reported)", met: null },
          { what: "scanOrphans median", value: s.median, unit: "ms", target: "≤ 1000 ms", met: s.median <= 1000 }
        ],
        notes: ["The provider is in memory, so its listing costs nothing; B6 measures a real listing (AWS on moto)."]
      }
    } finally {
      finishHome(home)
    }
  }
}
