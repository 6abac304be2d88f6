import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, type Layer, Option, type Scope, TestClock } from "effect"
import { Allocation } from "../domain/allocation.ts"
import { Controller } from "../domain/controller.ts"
import { Instance, type InstanceState } from "../domain/instance.ts"
import { OutputChunk, Run, type OutputStream } from "../domain/run.ts"
import { IllegalTransition, StoreError, type StoreErrorReason } from "../errors.ts"
import { newId } from "../naming.ts"
import { type LaunchRecordOptions, type LaunchRecords, launchRecords } from "./records.ts"
import { Store, type StoreService } from "../store.ts"
import { deflateSync, gzipSync } from "node:zlib"

// ---------------------------------------------------------------------------------------------
// Fixtures

/** A fixed point on the test clock, so times written by the store can be compared exactly. */
const T0 = 1_800_000_000_000

type Launch = LaunchRecords

type LaunchOverrides = Omit<LaunchRecordOptions, "createdAt"> & { readonly createdAt?: number }

const makeLaunch = (store: StoreService, overrides: LaunchOverrides = {}): Launch =>
  launchRecords(store.controlId, { ...overrides, createdAt: overrides.createdAt ?? T0 })

const createLaunch = (store: StoreService, overrides: LaunchOverrides = {}) =>
  Effect.gen(function* () {
    const launch = makeLaunch(store, overrides)
    yield* store.createLaunch(launch.manifest, launch.instance, launch.run)
    return launch
  })

const walkInstance = (store: StoreService, id: string, path: ReadonlyArray<InstanceState>) =>
  Effect.forEach(path, (to) => store.transitionInstance(id, to), { discard: true })

const toReady: ReadonlyArray<InstanceState> = ["spawning", "booting", "ready"]

const makeController = (id: string, leaseExpiresAt: number) =>
  new Controller({
    id,
    pid: 4242,
    hostname: "test-host",
    hubUrl: "http://127.0.0.1:4000",
    secret: `secret-${id}`,
    startedAt: T0,
    leaseExpiresAt
  })

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
const text = (data: Uint8Array): string => new TextDecoder().decode(data)

const concat = (chunks: ReadonlyArray<OutputChunk>, stream: OutputStream): string =>
  chunks
    .filter((c) => c.stream === stream)
    .map((c) => text(c.data))
    .join("")

/** Fails the test unless `effect` fails with a `StoreError` of the given reason. */
const expectStoreError = <A, E>(effect: Effect.Effect<A, E>, reason: StoreErrorReason) =>
  Effect.gen(function* () {
    const error = yield* Effect.flip(effect)
    expect(error).toBeInstanceOf(StoreError)
    if (error instanceof StoreError) expect(error.reason).toBe(reason)
    return error
  })

const expectIllegal = <A, E>(
  effect: Effect.Effect<A, E>,
  expected: { readonly entity: IllegalTransition["entity"]; readonly id: string; readonly from: string; readonly to: string }
) =>
  Effect.gen(function* () {
    const error = yield* Effect.flip(effect)
    expect(error).toBeInstanceOf(IllegalTransition)
    expect(error).toMatchObject(expected)
  })

/**
 * Races run with the fibers yielding every few steps, so that they interleave inside the
 * store's own work as two processes would: a store that reads a state and then writes it
 * without a compare-and-set lets both racers through, instead of winning by running each
 * operation in one go. (Fewer than a handful of steps makes the runtime yield for ever.)
 */
const interleaveOften = 16

const ids = (records: ReadonlyArray<{ readonly id: string }>): Array<string> => records.map((r) => r.id).sort()

// ---------------------------------------------------------------------------------------------

/**
 * The contract every `Store` implementation runs against itself.
 *
 * `makeLayer` is called once per test and must return a layer for a new, empty store. Building
 * that same layer value a second time must reopen the same store (the durability test closes
 * and reopens it); a store with no durable home cannot pass that test, on purpose.
 */
export const storeSuite = (name: string, makeLayer: () => Layer.Layer<Store, unknown>): void => {
  /** Runs `body` against a fresh store, on the test clock set to `T0`. */
  const withStore = <A, E>(body: (store: StoreService) => Effect.Effect<A, E, Scope.Scope>) =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      return yield* Effect.scoped(Effect.flatMap(Store, body))
    }).pipe(Effect.provide(makeLayer()))

  describe(name, () => {
    describe("controllers", () => {
      it.effect("round-trips, updates in place and removes", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const first = makeController("controller-a", T0 + 30_000)
            yield* store.upsertController(first)
            expect(yield* store.getController("controller-a")).toEqual(Option.some(first))

            const moved = new Controller({ ...first, pid: 999, hubUrl: "http://127.0.0.1:5000", leaseExpiresAt: T0 + 60_000 })
            yield* store.upsertController(moved)
            expect(yield* store.getController("controller-a")).toEqual(Option.some(moved))

            expect(yield* store.getController("nobody")).toEqual(Option.none())
            yield* store.removeController("controller-a")
            expect(yield* store.getController("controller-a")).toEqual(Option.none())
            // Removing what is already gone is not an error: cleanup may run twice.
            yield* store.removeController("controller-a")
          })
        )
      )

      it.effect("lists every controller; removeIdleController keeps one that owns a live instance", () =>
        withStore((store) =>
          Effect.gen(function* () {
            yield* store.upsertController(makeController("busy", T0))
            yield* store.upsertController(makeController("idle", T0))
            expect(ids(yield* store.listControllers)).toEqual(["busy", "idle"])
            const launch = yield* createLaunch(store, { controllerId: "busy", leaseExpiresAt: T0 + 60_000 })
            expect(yield* store.removeIdleController("busy")).toBe(false)
            expect(yield* store.removeIdleController("idle")).toBe(true)
            expect(yield* store.removeIdleController("idle")).toBe(false)
            expect(ids(yield* store.listControllers)).toEqual(["busy"])
            // Once what it owned is terminated, nothing of it is left to reap.
            yield* walkInstance(store, launch.instance.id, [...toReady, "terminating", "terminated"])
            expect(yield* store.removeIdleController("busy")).toBe(true)
            expect(yield* store.listControllers).toEqual([])
          })
        )
      )

      it.effect("renewLeases extends the controller and its live instances only, in one go", () =>
        withStore((store) =>
          Effect.gen(function* () {
            yield* store.upsertController(makeController("controller-a", T0 + 30_000))
            yield* store.upsertController(makeController("controller-b", T0 + 30_000))
            const live = yield* createLaunch(store, { controllerId: "controller-a" })
            const ended = yield* createLaunch(store, { controllerId: "controller-a" })
            yield* walkInstance(store, ended.instance.id, ["terminating", "terminated"])
            const other = yield* createLaunch(store, { controllerId: "controller-b" })

            yield* store.renewLeases("controller-a", T0 + 90_000)

            const controller = yield* store.getController("controller-a")
            expect(Option.map(controller, (c) => c.leaseExpiresAt)).toEqual(Option.some(T0 + 90_000))
            const leaseOf = (id: string) =>
              Effect.map(store.getInstance(id), Option.map((i) => i.leaseExpiresAt))
            expect(yield* leaseOf(live.instance.id)).toEqual(Option.some(T0 + 90_000))
            expect(yield* leaseOf(ended.instance.id)).toEqual(Option.some(T0 + 30_000))
            expect(yield* leaseOf(other.instance.id)).toEqual(Option.some(T0 + 30_000))
            const otherController = yield* store.getController("controller-b")
            expect(Option.map(otherController, (c) => c.leaseExpiresAt)).toEqual(Option.some(T0 + 30_000))

            yield* expectStoreError(store.renewLeases("nobody", T0 + 90_000), "not-found")
          })
        )
      )
    })

    describe("launches", () => {
      it.effect("createLaunch writes the manifest, the instance and the run as given", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const launch = yield* createLaunch(store, {
              env: { PATH: "/usr/bin", QUOTE: `it's "quoted"`, UNICODE: "héllo ✓", EMPTY: "" }
            })
            expect(yield* store.getManifest(launch.manifest.id)).toEqual(Option.some(launch.manifest))
            expect(yield* store.getInstance(launch.instance.id)).toEqual(Option.some(launch.instance))
            expect(yield* store.getInstanceByName(launch.instance.name)).toEqual(Option.some(launch.instance))
            expect(yield* store.getRun(launch.run.id)).toEqual(Option.some(launch.run))
            expect(yield* store.listRunsForInstance(launch.instance.id)).toEqual([launch.run])

            expect(yield* store.getManifest("missing")).toEqual(Option.none())
            expect(yield* store.getInstance("missing")).toEqual(Option.none())
            expect(yield* store.getInstanceByName("repl-missing")).toEqual(Option.none())
            expect(yield* store.getRun("missing")).toEqual(Option.none())
          })
        )
      )

      it.effect("nullable fields round-trip with values", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const base = makeLaunch(store)
            const instance = new Instance({
              ...base.instance,
              region: "eu-west-1",
              providerRef: "i-0123",
              error: "previous attempt failed"
            })
            const run = new Run({ ...base.run, workdir: "/srv/app", maxDurationMs: 90_000 })
            yield* store.createLaunch(base.manifest, instance, run)
            expect(yield* store.getInstance(instance.id)).toEqual(Option.some(instance))
            expect(yield* store.getRun(run.id)).toEqual(Option.some(run))
          })
        )
      )

      it.effect("createLaunch is all or nothing", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const first = yield* createLaunch(store)
            const second = makeLaunch(store)
            // The run id collides with the first launch's run, after the manifest and instance
            // were accepted: neither may remain.
            const clash = new Run({ ...second.run, id: first.run.id })
            yield* expectStoreError(store.createLaunch(second.manifest, second.instance, clash), "constraint")
            expect(yield* store.getManifest(second.manifest.id)).toEqual(Option.none())
            expect(yield* store.getInstance(second.instance.id)).toEqual(Option.none())
            expect(yield* store.getRun(first.run.id)).toEqual(Option.some(first.run))
          })
        )
      )

      it.effect("createLaunch only records a launch in its initial states (write-ahead intent)", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const launch = makeLaunch(store)
            const ready = new Instance({ ...launch.instance, state: "ready" })
            yield* expectStoreError(store.createLaunch(launch.manifest, ready, launch.run), "constraint")
            const running = new Run({ ...launch.run, state: "running" })
            yield* expectStoreError(store.createLaunch(launch.manifest, launch.instance, running), "constraint")
            expect(yield* store.getInstance(launch.instance.id)).toEqual(Option.none())
          })
        )
      )

      it.effect("closeManifest closes once and is idempotent", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const launch = yield* createLaunch(store)
            yield* store.closeManifest(launch.manifest.id)
            expect(Option.map(yield* store.getManifest(launch.manifest.id), (m) => m.state)).toEqual(
              Option.some("closed")
            )
            yield* store.closeManifest(launch.manifest.id)
            expect(Option.map(yield* store.getManifest(launch.manifest.id), (m) => m.state)).toEqual(
              Option.some("closed")
            )
            yield* expectStoreError(store.closeManifest("missing"), "not-found")
          })
        )
      )
    })

    describe("instance transitions", () => {
      it.effect("follow the machine through a whole life, applying patches", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const { instance } = yield* createLaunch(store)

            yield* TestClock.setTime(T0 + 1_000)
            const spawning = yield* store.transitionInstance(instance.id, "spawning")
            expect(spawning.state).toBe("spawning")
            expect(spawning.updatedAt).toBe(T0 + 1_000)

            yield* TestClock.setTime(T0 + 2_000)
            const booting = yield* store.transitionInstance(instance.id, "booting", {
              providerRef: "i-0abc",
              region: "us-east-1"
            })
            expect(booting).toEqual(
              new Instance({
                ...instance,
                state: "booting",
                providerRef: "i-0abc",
                region: "us-east-1",
                updatedAt: T0 + 2_000
              })
            )
            expect(yield* store.getInstance(instance.id)).toEqual(Option.some(booting))

            // Absent fields are kept, null clears.
            const ready = yield* store.transitionInstance(instance.id, "ready", { error: "slow boot" })
            expect(ready.providerRef).toBe("i-0abc")
            expect(ready.error).toBe("slow boot")
            const allocated = yield* store.transitionInstance(instance.id, "allocated", { error: null })
            expect(allocated.error).toBeNull()
            expect(allocated.region).toBe("us-east-1")

            const back = yield* store.transitionInstance(instance.id, "ready")
            expect(back.state).toBe("ready")
            yield* walkInstance(store, instance.id, ["terminating", "terminated"])
            expect(Option.map(yield* store.getInstance(instance.id), (i) => i.state)).toEqual(Option.some("terminated"))
          })
        )
      )

      it.effect("an illegal move fails with IllegalTransition naming from and to, and changes nothing", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const { instance } = yield* createLaunch(store)
            yield* expectIllegal(store.transitionInstance(instance.id, "ready"), {
              entity: "instance",
              id: instance.id,
              from: "requested",
              to: "ready"
            })
            yield* expectIllegal(store.transitionInstance(instance.id, "requested"), {
              entity: "instance",
              id: instance.id,
              from: "requested",
              to: "requested"
            })
            expect(yield* store.getInstance(instance.id)).toEqual(Option.some(instance))

            yield* walkInstance(store, instance.id, ["failed", "terminated"])
            yield* expectIllegal(store.transitionInstance(instance.id, "terminating"), {
              entity: "instance",
              id: instance.id,
              from: "terminated",
              to: "terminating"
            })
            yield* expectStoreError(store.transitionInstance("missing", "spawning"), "not-found")
          })
        )
      )

      it.effect("two fibers moving the same instance out of the same state: exactly one wins", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const launches = yield* Effect.forEach(Array.from({ length: 20 }), () => createLaunch(store))
            yield* Effect.forEach(launches, (l) => walkInstance(store, l.instance.id, toReady), { discard: true })

            const outcomes = yield* Effect.forEach(
              launches,
              (l) =>
                Effect.all(
                  [
                    Effect.either(store.transitionInstance(l.instance.id, "allocated")),
                    Effect.either(store.transitionInstance(l.instance.id, "allocated"))
                  ],
                  { concurrency: 2 }
                ).pipe(Effect.map((results) => ({ id: l.instance.id, results }))),
              { concurrency: "unbounded" }
            ).pipe(Effect.withMaxOpsBeforeYield(interleaveOften))
            for (const { id, results } of outcomes) {
              const wins = results.filter(Either.isRight)
              const losses = results.filter(Either.isLeft).map((l) => l.left)
              expect(wins).toHaveLength(1)
              expect(losses).toHaveLength(1)
              expect(losses[0]).toBeInstanceOf(IllegalTransition)
              expect(losses[0]).toMatchObject({ from: "allocated", to: "allocated", id })
            }
            const states = yield* Effect.forEach(launches, (l) => store.getInstance(l.instance.id))
            expect(states.map(Option.map((i) => i.state))).toEqual(launches.map(() => Option.some("allocated")))
          })
        )
      )
    })

    describe("leases", () => {
      it.effect("claimExpiredInstances takes only live instances whose lease expired, once", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const now = T0 + 100_000
            const expired = yield* createLaunch(store, { controllerId: "dead", leaseExpiresAt: now - 1 })
            const unowned = yield* createLaunch(store, { ownerControllerId: null, leaseExpiresAt: null })
            const valid = yield* createLaunch(store, { controllerId: "alive", leaseExpiresAt: now + 10_000 })
            const atTheEdge = yield* createLaunch(store, { controllerId: "alive", leaseExpiresAt: now })
            const gone = yield* createLaunch(store, { controllerId: "dead", leaseExpiresAt: now - 1 })
            yield* walkInstance(store, gone.instance.id, ["terminating", "terminated"])
            const failed = yield* createLaunch(store, { controllerId: "dead", leaseExpiresAt: now - 1 })
            yield* walkInstance(store, failed.instance.id, ["failed"])

            const claimed = yield* store.claimExpiredInstances("reaper", now, now + 30_000)
            expect(ids(claimed)).toEqual(ids([expired.instance, unowned.instance, failed.instance]))
            for (const instance of claimed) {
              expect(instance.ownerControllerId).toBe("reaper")
              expect(instance.leaseExpiresAt).toBe(now + 30_000)
              expect(yield* store.getInstance(instance.id)).toEqual(Option.some(instance))
            }
            expect(yield* store.claimExpiredInstances("second-reaper", now, now + 30_000)).toEqual([])

            for (const untouched of [valid.instance, atTheEdge.instance]) {
              expect(Option.map(yield* store.getInstance(untouched.id), (i) => i.ownerControllerId)).toEqual(
                Option.some("alive")
              )
            }
            expect(Option.map(yield* store.getInstance(gone.instance.id), (i) => i.ownerControllerId)).toEqual(
              Option.some("dead")
            )
          })
        )
      )

      it.effect("two reapers at once never claim the same instance", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const now = T0 + 100_000
            const launches = yield* Effect.forEach(Array.from({ length: 10 }), () =>
              createLaunch(store, { controllerId: "dead", leaseExpiresAt: now - 5 })
            )
            const [a, b] = yield* Effect.all(
              [
                store.claimExpiredInstances("reaper-a", now, now + 30_000),
                store.claimExpiredInstances("reaper-b", now, now + 30_000)
              ],
              { concurrency: 2 }
            ).pipe(Effect.withMaxOpsBeforeYield(interleaveOften))
            const both = ids([...a, ...b])
            expect(both).toEqual(ids(launches.map((l) => l.instance)))
            expect(new Set(both).size).toBe(launches.length)
          })
        )
      )

      it.effect("claimInstance takes one instance whatever its lease", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const launch = yield* createLaunch(store, { controllerId: "alive", leaseExpiresAt: T0 + 60_000 })
            const other = yield* createLaunch(store, { controllerId: "alive", leaseExpiresAt: T0 + 60_000 })
            const claimed = yield* store.claimInstance(launch.instance.id, "canceller", T0 + 90_000)
            expect(claimed.ownerControllerId).toBe("canceller")
            expect(claimed.leaseExpiresAt).toBe(T0 + 90_000)
            expect(claimed.state).toBe("requested")
            expect(yield* store.getInstance(launch.instance.id)).toEqual(Option.some(claimed))
            expect(yield* store.getInstance(other.instance.id)).toEqual(Option.some(other.instance))
            yield* expectStoreError(store.claimInstance("missing", "canceller", T0), "not-found")
          })
        )
      )
    })

    describe("instances listing", () => {
      it.effect("listInstances filters by state, provider and owner", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const a = yield* createLaunch(store, { controllerId: "c1", provider: "local", createdAt: T0 })
            const b = yield* createLaunch(store, { controllerId: "c1", provider: "aws", createdAt: T0 + 1 })
            const c = yield* createLaunch(store, { controllerId: "c2", provider: "aws", createdAt: T0 + 2 })
            yield* walkInstance(store, b.instance.id, toReady)
            yield* walkInstance(store, c.instance.id, ["failed"])

            expect(ids(yield* store.listInstances())).toEqual(ids([a.instance, b.instance, c.instance]))
            expect(ids(yield* store.listInstances({ provider: "aws" }))).toEqual(ids([b.instance, c.instance]))
            expect(ids(yield* store.listInstances({ ownerControllerId: "c1" }))).toEqual(ids([a.instance, b.instance]))
            expect(ids(yield* store.listInstances({ states: ["ready", "failed"] }))).toEqual(
              ids([b.instance, c.instance])
            )
            expect(ids(yield* store.listInstances({ states: ["ready", "failed"], ownerControllerId: "c2" }))).toEqual(
              ids([c.instance])
            )
            expect(yield* store.listInstances({ states: [] })).toEqual([])
            expect(yield* store.listInstances({ provider: "orbstack" })).toEqual([])
          })
        )
      )
    })

    describe("allocations", () => {
      it.effect("round-trip, release once, and list by state", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const one = yield* createLaunch(store)
            const two = yield* createLaunch(store)
            const first = new Allocation({
              id: newId(T0),
              instanceId: one.instance.id,
              runId: one.run.id,
              state: "active",
              createdAt: T0,
              releasedAt: null
            })
            const second = new Allocation({
              id: newId(T0 + 1),
              instanceId: two.instance.id,
              runId: two.run.id,
              state: "active",
              createdAt: T0 + 1,
              releasedAt: null
            })
            yield* store.createAllocation(first)
            yield* store.createAllocation(second)
            expect(yield* store.listAllocations()).toEqual([first, second])

            const released = yield* store.transitionAllocation(first.id, "released", T0 + 5_000)
            expect(released).toEqual(new Allocation({ ...first, state: "released", releasedAt: T0 + 5_000 }))
            expect(yield* store.listAllocations({ states: ["released"] })).toEqual([released])
            expect(yield* store.listAllocations({ states: ["active"] })).toEqual([second])
            expect(yield* store.listAllocations({ states: [] })).toEqual([])
            expect(yield* store.listAllocations({ instanceId: two.instance.id })).toEqual([second])
            expect(yield* store.listAllocations({ states: ["released"], instanceId: two.instance.id })).toEqual([])
            expect(yield* store.listAllocations({ states: ["released"], instanceId: first.instanceId })).toEqual([released])

            yield* expectIllegal(store.transitionAllocation(first.id, "released", T0 + 6_000), {
              entity: "allocation",
              id: first.id,
              from: "released",
              to: "released"
            })
            yield* expectIllegal(store.transitionAllocation(first.id, "active", T0 + 6_000), {
              entity: "allocation",
              id: first.id,
              from: "released",
              to: "active"
            })
            yield* expectStoreError(store.transitionAllocation("missing", "released", T0), "not-found")
            yield* expectStoreError(store.createAllocation(first), "constraint")
          })
        )
      )
    })

    describe("runs", () => {
      it.effect("transitions follow the machine and apply patches", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const { run } = yield* createLaunch(store)
            yield* store.transitionRun(run.id, "provisioning")
            const running = yield* store.transitionRun(run.id, "running", { startedAt: T0 + 10 })
            expect(running.startedAt).toBe(T0 + 10)
            const done = yield* store.transitionRun(run.id, "succeeded", { exitCode: 0, endedAt: T0 + 20 })
            expect(done).toEqual(
              new Run({ ...run, state: "succeeded", startedAt: T0 + 10, exitCode: 0, endedAt: T0 + 20 })
            )
            expect(yield* store.getRun(run.id)).toEqual(Option.some(done))

            yield* expectIllegal(store.transitionRun(run.id, "running"), {
              entity: "run",
              id: run.id,
              from: "succeeded",
              to: "running"
            })
            yield* expectStoreError(store.transitionRun("missing", "running"), "not-found")

            const other = yield* createLaunch(store)
            yield* expectIllegal(store.transitionRun(other.run.id, "succeeded"), {
              entity: "run",
              id: other.run.id,
              from: "pending",
              to: "succeeded"
            })
            const killed = yield* store.transitionRun(other.run.id, "cancelled", { signal: "SIGTERM", error: "cancelled by user" })
            expect(killed).toMatchObject({ state: "cancelled", signal: "SIGTERM", error: "cancelled by user", exitCode: null })
          })
        )
      )

      it.effect("listRuns is newest first, honours limit and filters by state", () =>
        withStore((store) =>
          Effect.gen(function* () {
            // Created out of order on purpose: the order must come from createdAt, not insertion.
            const middle = yield* createLaunch(store, { createdAt: T0 + 2_000 })
            const oldest = yield* createLaunch(store, { createdAt: T0 + 1_000 })
            const newest = yield* createLaunch(store, { createdAt: T0 + 3_000 })
            yield* store.transitionRun(middle.run.id, "cancelled")

            const all = yield* store.listRuns()
            expect(all.map((r) => r.id)).toEqual([newest.run.id, middle.run.id, oldest.run.id])
            expect((yield* store.listRuns({ limit: 2 })).map((r) => r.id)).toEqual([newest.run.id, middle.run.id])
            expect(yield* store.listRuns({ limit: 0 })).toEqual([])
            expect((yield* store.listRuns({ states: ["pending"] })).map((r) => r.id)).toEqual([
              newest.run.id,
              oldest.run.id
            ])
            expect((yield* store.listRuns({ states: ["pending"], limit: 1 })).map((r) => r.id)).toEqual([newest.run.id])
            expect((yield* store.listRuns({ states: ["cancelled"] })).map((r) => r.id)).toEqual([middle.run.id])
            expect(yield* store.listRuns({ states: [] })).toEqual([])
          })
        )
      )
    })

    describe("output", () => {
      it.effect("appends in order and returns the next offset of each stream", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const { run } = yield* createLaunch(store)
            expect(yield* store.appendOutput(run.id, "stdout", 0, bytes("hello "))).toBe(6)
            expect(yield* store.appendOutput(run.id, "stderr", 0, bytes("warn\n"))).toBe(5)
            expect(yield* store.appendOutput(run.id, "stdout", 6, bytes("world\n"))).toBe(12)

            const chunks = yield* store.readOutput(run.id, 0, 100)
            expect(chunks.map((c) => [c.stream, c.offset, text(c.data)])).toEqual([
              ["stdout", 0, "hello "],
              ["stderr", 0, "warn\n"],
              ["stdout", 6, "world\n"]
            ])
            expect(chunks.every((c) => c.runId === run.id && c.data instanceof Uint8Array)).toBe(true)
            const seqs = chunks.map((c) => c.seq)
            expect([...seqs].sort((a, b) => a - b)).toEqual(seqs)
            expect(new Set(seqs).size).toBe(seqs.length)
          })
        )
      )

      it.effect("a resent chunk is skipped and an overlapping one is trimmed", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const { run } = yield* createLaunch(store)
            yield* store.appendOutput(run.id, "stdout", 0, bytes("abcdef"))
            expect(yield* store.appendOutput(run.id, "stdout", 0, bytes("abcdef"))).toBe(6)
            expect(yield* store.appendOutput(run.id, "stdout", 2, bytes("cd"))).toBe(6)
            expect(yield* store.readOutput(run.id, 0, 100)).toHaveLength(1)

            expect(yield* store.appendOutput(run.id, "stdout", 4, bytes("efghij"))).toBe(10)
            const chunks = yield* store.readOutput(run.id, 0, 100)
            expect(chunks.map((c) => [c.offset, text(c.data)])).toEqual([
              [0, "abcdef"],
              [6, "ghij"]
            ])
            expect(concat(chunks, "stdout")).toBe("abcdefghij")
            expect(yield* store.appendOutput(run.id, "stdout", 10, new Uint8Array(0))).toBe(10)
          })
        )
      )

      it.effect("a chunk beyond the end is refused as a gap and nothing is written", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const { run } = yield* createLaunch(store)
            yield* store.appendOutput(run.id, "stdout", 0, bytes("abc"))
            yield* expectStoreError(store.appendOutput(run.id, "stdout", 4, bytes("e")), "constraint")
            yield* expectStoreError(store.appendOutput(run.id, "stderr", 1, bytes("x")), "constraint")
            expect(concat(yield* store.readOutput(run.id, 0, 100), "stdout")).toBe("abc")
            expect(yield* store.readOutput(run.id, 0, 100)).toHaveLength(1)
            expect(yield* store.appendOutput(run.id, "stdout", 3, bytes("d"))).toBe(4)
            yield* expectStoreError(store.appendOutput("missing", "stdout", 0, bytes("x")), "not-found")
          })
        )
      )

      it.effect("outputEnd says where each stream continues, without reading the output", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const { run } = yield* createLaunch(store)
            expect(yield* store.outputEnd(run.id, "stdout")).toBe(0)
            yield* store.appendOutput(run.id, "stdout", 0, bytes("abcdef"))
            yield* store.appendOutput(run.id, "stderr", 0, bytes("xy"))
            yield* store.appendOutput(run.id, "stdout", 4, bytes("efgh"))
            const big = bytes("z".repeat(5000))
            yield* store.appendOutput(run.id, "stdout", 8, big, deflateSync(big))
            expect(yield* store.outputEnd(run.id, "stdout")).toBe(5008)
            expect(yield* store.outputEnd(run.id, "stderr")).toBe(2)
            // A resend moves nothing.
            yield* store.appendOutput(run.id, "stderr", 0, bytes("xy"))
            expect(yield* store.outputEnd(run.id, "stderr")).toBe(2)
            yield* expectStoreError(store.outputEnd("missing", "stdout"), "not-found")
          })
        )
      )

      it.effect("keeps binary data exactly", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const { run } = yield* createLaunch(store)
            const data = Uint8Array.from({ length: 256 }, (_, i) => i)
            expect(yield* store.appendOutput(run.id, "stdout", 0, data)).toBe(256)
            // A view into a larger buffer: only the viewed bytes may be stored.
            const backing = Uint8Array.from({ length: 300 }, (_, i) => 255 - (i % 256))
            const view = backing.subarray(100, 150)
            expect(yield* store.appendOutput(run.id, "stdout", 256, view)).toBe(306)
            const chunks = yield* store.readOutput(run.id, 0, 10)
            expect(chunks.map((c) => Array.from(c.data))).toEqual([Array.from(data), Array.from(view)])
          })
        )
      )

      it.effect("output handed over with its compressed form reads back as written", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const { run } = yield* createLaunch(store)
            const first = bytes("0123456789".repeat(100))
            expect(yield* store.appendOutput(run.id, "stdout", 0, first, deflateSync(first))).toBe(1000)
            // A resend of the same compressed chunk is skipped like a plain one.
            expect(yield* store.appendOutput(run.id, "stdout", 0, first, deflateSync(first))).toBe(1000)
            // One that overlaps what is stored keeps only its new part, compressed or not.
            const second = bytes("abcdefghij".repeat(50))
            expect(yield* store.appendOutput(run.id, "stdout", 990, bytes("0123456789").subarray(0, 10))).toBe(1000)
            const overlapping = new Uint8Array([...first.subarray(900), ...second])
            expect(yield* store.appendOutput(run.id, "stdout", 900, overlapping, deflateSync(overlapping))).toBe(1500)
            // Compressed bytes that are no smaller than the chunk are not worth keeping, but the chunk is.
            const tiny = bytes("z")
            expect(yield* store.appendOutput(run.id, "stderr", 0, tiny, deflateSync(tiny))).toBe(1)
            const chunks = yield* store.readOutput(run.id, 0, 100)
            expect(concat(chunks, "stdout")).toBe(text(first) + text(second))
            expect(concat(chunks, "stderr")).toBe("z")
            expect(chunks.map((c) => [c.stream, c.offset, c.data.length])).toEqual([
              ["stdout", 0, 1000],
              ["stdout", 1000, 500],
              ["stderr", 0, 1]
            ])
            expect(chunks.every((c) => c.data instanceof Uint8Array)).toBe(true)
          })
        )
      )

      it.effect("output handed over in the gzip wrapper reads back as written, beside zlib-wrapped chunks", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const { run } = yield* createLaunch(store)
            const first = bytes("gzip-wrapped output\n".repeat(100))
            const second = bytes("zlib-wrapped output\n".repeat(100))
            expect(yield* store.appendOutput(run.id, "stdout", 0, first, gzipSync(first))).toBe(first.length)
            expect(yield* store.appendOutput(run.id, "stdout", first.length, second, deflateSync(second))).toBe(first.length + second.length)
            // A resend, compressed, is skipped like every other.
            expect(yield* store.appendOutput(run.id, "stdout", 0, first, gzipSync(first))).toBe(first.length + second.length)
            const chunks = yield* store.readOutput(run.id, 0, 100)
            expect(concat(chunks, "stdout")).toBe(text(first) + text(second))
          })
        )
      )

      it.effect("readOutput pages with afterSeq and limit, per run", () =>
        withStore((store) =>
          Effect.gen(function* () {
            const { run } = yield* createLaunch(store)
            const other = yield* createLaunch(store)
            let offset = 0
            let otherOffset = 0
            for (let i = 0; i < 7; i++) {
              offset = yield* store.appendOutput(run.id, "stdout", offset, bytes(`line ${i}\n`))
              otherOffset = yield* store.appendOutput(other.run.id, "stderr", otherOffset, bytes(`other ${i}\n`))
            }
            const pages: Array<ReadonlyArray<OutputChunk>> = []
            let after = 0
            for (;;) {
              const page = yield* store.readOutput(run.id, after, 3)
              if (page.length === 0) break
              pages.push(page)
              const last = page[page.length - 1]
              if (last === undefined) break
              after = last.seq
            }
            expect(pages.map((p) => p.length)).toEqual([3, 3, 1])
            const all = pages.flat()
            expect(all.every((c) => c.runId === run.id)).toBe(true)
            expect(concat(all, "stdout")).toBe(Array.from({ length: 7 }, (_, i) => `line ${i}\n`).join(""))
            expect(yield* store.readOutput(run.id, after, 3)).toEqual([])
            expect(yield* store.readOutput(run.id, 0, 0)).toEqual([])
            expect(yield* store.readOutput("missing", 0, 10)).toEqual([])
          })
        )
      )
    })

    describe("durability", () => {
      it.effect("the control id and the records survive closing and reopening", () =>
        Effect.gen(function* () {
          yield* TestClock.setTime(T0)
          const layer = makeLayer()
          const first = yield* Effect.scoped(
            Effect.gen(function* () {
              const store = yield* Store
              const launch = yield* createLaunch(store)
              yield* store.transitionInstance(launch.instance.id, "spawning")
              return { controlId: store.controlId, launch }
            })
          ).pipe(Effect.provide(layer))
          expect(first.controlId).toMatch(/^[0-9a-z]{8}$/)
          expect(first.launch.instance.name).toContain(first.controlId)

          const second = yield* Effect.gen(function* () {
            const store = yield* Store
            return { controlId: store.controlId, instance: yield* store.getInstance(first.launch.instance.id) }
          }).pipe(Effect.provide(layer))
          expect(second.controlId).toBe(first.controlId)
          expect(Option.map(second.instance, (i) => i.state)).toEqual(Option.some("spawning"))
        })
      )

      it.effect("two stores have different control ids", () =>
        Effect.gen(function* () {
          const a = yield* Effect.map(Store, (s) => s.controlId).pipe(Effect.provide(makeLayer()))
          const b = yield* Effect.map(Store, (s) => s.controlId).pipe(Effect.provide(makeLayer()))
          expect(a).not.toBe(b)
        })
      )
    })
  })
}
