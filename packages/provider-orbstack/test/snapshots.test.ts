import type { InstanceRef, ProviderSnapshots } from "@skyrepl/core"
import { makeFakeController } from "@skyrepl/core/testing"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { afterAll } from "vitest"
import { OrbStackProvider, SNAPSHOT_PREFIX } from "../src/index.ts"
import { makeEmulator } from "./helpers.ts"

const emulator = makeEmulator()

afterAll(async () => {
  const left = emulator.processes()
  await emulator.dispose()
  expect(left).toEqual([])
})

const machines = Effect.promise(() => emulator.machines())

describe("snapshots: orbctl clone to a stopped machine", () => {
  it.live("create, list, delete; a snapshot is a copy of the disk and never an instance", () =>
    Effect.gen(function* () {
      const provider = yield* OrbStackProvider.make(emulator.options())
      const snapshots: ProviderSnapshots | undefined = provider.snapshots
      if (snapshots === undefined) return expect.unreachable()
      const controller = yield* makeFakeController()
      const name = emulator.newName()
      const ref: InstanceRef = { name, providerRef: null, region: null }
      yield* Effect.acquireRelease(
        Effect.flatMap(provider.parseSpec(undefined), (spec) =>
          Effect.flatMap(controller.bootstrap(name), (bootstrap) => provider.spawn(name, spec, bootstrap))
        ),
        () => Effect.orDie(provider.terminate(ref))
      )
      yield* Effect.promise(() => emulator.orbctl(["run", "-m", name, "-u", "root", "sh", "-c", "echo kept > /root/mark"]))

      const snapshot = yield* snapshots.create(ref, "base-image")
      expect(snapshot).toMatchObject({
        id: `${SNAPSHOT_PREFIX}base-image`,
        name: "base-image",
        provider: "orbstack",
        region: null,
        source: name,
        state: "available"
      })
      expect((yield* machines).find((m) => m.name === snapshot.id)?.state).toBe("stopped")
      expect((yield* snapshots.list()).map((s) => [s.id, s.name, s.state])).toEqual([[snapshot.id, "base-image", "available"]])
      // Snapshots stay out of the instance list, so the sweep never reaps them.
      expect((yield* provider.list()).map((i) => i.name)).toEqual([name])

      // The clone carries the instance's disk: started on its own, it has the file.
      const inside = yield* Effect.promise(() => emulator.orbctl(["run", "-m", snapshot.id, "cat", "/root/mark"]))
      expect(inside.stdout.trim()).toBe("kept")
      yield* Effect.promise(() => emulator.orbctl(["stop", snapshot.id]))

      // Its id is a spec: a new instance is a clone of it, started, with the agent of its own
      // launch; the snapshot itself stays stopped and untouched.
      const spec = yield* provider.parseSpec(snapshot.id)
      expect(spec).toEqual({ provider: "orbstack", canonical: snapshot.id, region: null, attributes: { snapshot: snapshot.id } })
      const cloned = emulator.newName()
      const clonedRef: InstanceRef = { name: cloned, providerRef: null, region: null }
      yield* Effect.acquireRelease(
        Effect.flatMap(controller.bootstrap(cloned), (bootstrap) => provider.spawn(cloned, spec, bootstrap)),
        () => Effect.orDie(provider.terminate(clonedRef))
      )
      yield* controller.registration(cloned, "30 seconds")
      expect(yield* provider.describe(clonedRef)).toBe("running")
      const fromClone = yield* Effect.promise(() => emulator.orbctl(["run", "-m", cloned, "cat", "/root/mark"]))
      expect(fromClone.stdout.trim()).toBe("kept")
      expect((yield* machines).find((m) => m.name === snapshot.id)?.state).toBe("stopped")
      yield* provider.terminate(clonedRef)
      // A snapshot that is not there launches nothing.
      const missingSpec = yield* provider.parseSpec(`${SNAPSHOT_PREFIX}no-such-snapshot`)
      const gone = emulator.newName()
      const refusedLaunch = yield* Effect.flip(Effect.flatMap(controller.bootstrap(gone), (bootstrap) => provider.spawn(gone, missingSpec, bootstrap)))
      expect(refusedLaunch.reason).toBe("not-found")
      expect((yield* machines).map((m) => m.name).sort()).toEqual([name, snapshot.id].sort())
      expect((yield* Effect.flip(provider.parseSpec(`${SNAPSHOT_PREFIX}Not_A_Name`))).message).toContain("is not a snapshot id")

      const again = yield* Effect.flip(snapshots.create(ref, "base-image"))
      expect(again.reason).toBe("invalid-request")
      expect(again.message).toContain("already exists")
      expect((yield* Effect.flip(snapshots.create(ref, "Base Image"))).reason).toBe("invalid-request")

      yield* snapshots.delete(snapshot.id, null)
      expect((yield* machines).map((m) => m.name)).toEqual([name])
      yield* snapshots.delete(snapshot.id, null)
      expect(yield* snapshots.list()).toEqual([])
    }).pipe(Effect.scoped)
  )

  it.live("refuses what is not its own, and reports an instance that is not there", () =>
    Effect.gen(function* () {
      const provider = yield* OrbStackProvider.make(emulator.options())
      const snapshots: ProviderSnapshots | undefined = provider.snapshots
      if (snapshots === undefined) return expect.unreachable()
      yield* Effect.promise(() => emulator.orbctl(["create", "ubuntu", "dev-box"]))
      const refused = yield* Effect.flip(snapshots.delete("dev-box", null))
      expect(refused.reason).toBe("invalid-request")
      expect(refused.message).toContain(SNAPSHOT_PREFIX)
      expect((yield* machines).map((m) => m.name)).toEqual(["dev-box"])
      yield* Effect.promise(() => emulator.orbctl(["delete", "-f", "dev-box"]))

      const missing = yield* Effect.flip(snapshots.create({ name: emulator.newName(), providerRef: null, region: null }, "gone"))
      expect(missing.reason).toBe("not-found")
      expect(missing.message).toContain("VM not found")
      expect((yield* Effect.flip(snapshots.create({ name: "dev-box", providerRef: null, region: null }, "x"))).reason).toBe("invalid-request")
    })
  )
})
