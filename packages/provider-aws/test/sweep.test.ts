import { describe, expect, layer } from "@effect/vitest"
import { agentScriptPath, formatInstanceName, newId, scanOrphans, SkyRepl } from "@skyrepl/core"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { Context, Duration, Effect, Layer } from "effect"
import { rmSync } from "node:fs"
import { join } from "node:path"
import { AwsProvider } from "../src/index.ts"
import { type FaultProxy, startFaultProxy } from "./fault-proxy.ts"
import { liveInMoto, type MotoServer, optionsFor, REGION, removeDir, startMoto, tempDir } from "./support.ts"

// The sweep needs nothing from the store: with the database deleted, scanOrphans still finds
// every managed instance, in every region the provider scans, across DescribeInstances pages.

const OTHER_REGION = "eu-west-1"

interface FixtureService {
  readonly moto: MotoServer
  readonly proxy: FaultProxy
  readonly dir: string
}
class Fixture extends Context.Tag("test/SweepFixture")<Fixture, FixtureService>() {}

const fixture = Layer.scoped(
  Fixture,
  Effect.gen(function* () {
    const dir = yield* Effect.acquireRelease(Effect.sync(() => tempDir("sweep")), (d) => Effect.sync(() => removeDir(d)))
    const moto = yield* startMoto().pipe(Effect.orDie)
    const proxy = yield* startFaultProxy(moto.url)
    return { moto, proxy, dir }
  })
)

/** An engine on `home`, whose AWS provider always scans both regions, five instances a page. */
const engine = (home: string, regions: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const { moto, proxy, dir } = yield* Fixture
    return SkyRepl.layer({
      providers: [AwsProvider.layer({ ...optionsFor(moto, dir), endpoint: proxy.url, regions, pageSize: 5 })],
      store: SqliteStore.layer({ filename: join(home, "state.db") }),
      config: { home, leaseTtl: Duration.seconds(3), heartbeatInterval: Duration.millis(250), deadmanTimeout: Duration.seconds(5) }
    })
  })

const bootstrap = { agentUrl: "http://127.0.0.1:9", token: "t", heartbeatIntervalMs: 1000, deadmanTimeoutMs: 5000, agentScript: agentScriptPath }

describe("the sweep on AWS", () => {
  layer(fixture, { excludeTestServices: true, timeout: Duration.seconds(90) })((it) => {
    it.effect(
      "after the store is deleted, scanOrphans finds every managed instance in two regions, across pages, and reaps them",
      () =>
        Effect.gen(function* () {
          const { moto, proxy, dir } = yield* Fixture
          const home = join(dir, "home")
          const layer = yield* engine(home, [OTHER_REGION])

          // Instances launched by this state home (its control id in their names), seven in one
          // region and six in the other, recorded nowhere.
          const names = yield* Effect.gen(function* () {
            const repl = yield* SkyRepl
            const controlId = repl.store.controlId
            const provider = yield* repl.provider("aws").pipe(Effect.orDie)
            const launch = (region: string) =>
              Effect.gen(function* () {
                const name = formatInstanceName({ controlId, manifestId: newId(), instanceId: newId() })
                const spec = yield* Effect.orDie(provider.parseSpec("t3.micro", { region }))
                yield* provider.spawn(name, spec, bootstrap)
                return name
              })
            const east = yield* Effect.forEach(Array.from({ length: 7 }), () => launch(REGION), { concurrency: 4 })
            const west = yield* Effect.forEach(Array.from({ length: 6 }), () => launch(OTHER_REGION), { concurrency: 4 })
            return [...east, ...west]
          }).pipe(Effect.provide(layer))

          rmSync(join(home, "state.db"), { force: true })
          rmSync(join(home, "state.db-wal"), { force: true })
          rmSync(join(home, "state.db-shm"), { force: true })

          proxy.setRules([])
          const report = yield* scanOrphans({ providers: ["aws"] }).pipe(Effect.provide(yield* engine(home, [OTHER_REGION])))
          // Two regions, and at least two pages in each (seven and six instances, five a page).
          expect(proxy.calls("DescribeInstances")).toBeGreaterThanOrEqual(4)
          const found = new Map(report.orphans.map((o) => [o.name, o] as const))
          for (const name of names) {
            expect(found.get(name)).toMatchObject({ provider: "aws", reason: "untracked", action: "listed" })
          }
          expect(new Set(report.orphans.filter((o) => names.includes(o.name)).map((o) => o.region))).toEqual(new Set([REGION, OTHER_REGION]))

          const reaped = yield* scanOrphans({ providers: ["aws"], reap: true, minAge: 0, ownOnly: true }).pipe(
            Effect.provide(yield* engine(home, [OTHER_REGION]))
          )
          for (const name of names) expect(reaped.orphans.find((o) => o.name === name)?.action).toBe("reaped")
          const left = [...(yield* liveInMoto(moto.url)), ...(yield* liveInMoto(moto.url, OTHER_REGION))].filter((i) => names.includes(i.name ?? ""))
          expect(left).toEqual([])
        }),
      90_000
    )

    it.effect("list adds the regions the engine passes (the store's) to the ones it always scans", () =>
      Effect.gen(function* () {
        const { moto, dir } = yield* Fixture
        const launcher = yield* AwsProvider.make(optionsFor(moto, dir, { region: "ap-southeast-2" }))
        const name = formatInstanceName({ controlId: "abcdefgh", manifestId: newId(), instanceId: newId() })
        const spawned = yield* launcher.spawn(name, yield* Effect.orDie(launcher.parseSpec(undefined)), bootstrap)
        // A fresh provider whose default region is elsewhere does not look there by itself.
        const fresh = yield* AwsProvider.make(optionsFor(moto, dir))
        expect((yield* fresh.list()).some((i) => i.name === name)).toBe(false)
        const hinted = yield* fresh.list({ regions: ["ap-southeast-2"] })
        expect(hinted.find((i) => i.name === name)).toMatchObject({ region: "ap-southeast-2", providerRef: spawned.providerRef, state: "running" })
        yield* fresh.terminate({ name, providerRef: spawned.providerRef, region: "ap-southeast-2" })
        expect(yield* fresh.describe({ name, providerRef: spawned.providerRef, region: "ap-southeast-2" })).toBe("gone")
      })
    )
  })
})
