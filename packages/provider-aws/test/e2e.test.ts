import { describe, expect, layer } from "@effect/vitest"
import { createSnapshot, deleteSnapshot, launch, listInstances, type OutputChunk, SkyRepl } from "@skyrepl/core"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { Chunk, Context, Duration, Effect, Layer, Stream } from "effect"
import { execa } from "execa"
import { spawn } from "node:child_process"
import { join } from "node:path"
import { AwsProvider } from "../src/index.ts"
import type { BootHarness } from "../../../tools/aws-emulator/src/harness.ts"
import {
  motoCredentials,
  motoInstances,
  type MotoServer,
  optionsFor,
  rawInstance,
  removeDir,
  REGION,
  instanceTags,
  shutdownBehaviour,
  startBootHarness,
  startMoto,
  tempDir
} from "./support.ts"

// The whole path through the engine: spawn in moto, boot in the harness, the real agent, output,
// exit, cancel, terminate; and the dead-man switch with the controller killed outright.

interface EmulatorService {
  readonly moto: MotoServer
  readonly harness: BootHarness
  readonly dir: string
}
class Emulator extends Context.Tag("test/Emulator")<Emulator, EmulatorService>() {}

const emulator = Layer.scoped(
  Emulator,
  Effect.gen(function* () {
    const dir = yield* Effect.acquireRelease(Effect.sync(() => tempDir("e2e")), (d) => Effect.sync(() => removeDir(d)))
    const moto = yield* startMoto()
    const harness = yield* startBootHarness({ endpoint: moto.url, regions: [REGION, OWNER_REGION, EXITING_REGION], workDir: join(dir, "harness") })
    return { moto, harness, dir }
  }).pipe(Effect.orDie)
)

/**
 * The killed controller launches in a region of its own: a key pair belongs to one state home,
 * and the in-process engines here all share one (see `withEngine`).
 */
const OWNER_REGION = "us-west-2"
/** The same, for the controller that leaves with process.exit. */
const EXITING_REGION = "eu-west-1"

/** The controllers in their own processes run on the Bun installed beside the repository. */
const bun = join(import.meta.dirname, "..", "..", "..", "node_modules", ".bin", "bun")

const settings = (home: string) => ({
  home,
  leaseTtl: Duration.seconds(3),
  heartbeatInterval: Duration.millis(250),
  deadmanTimeout: Duration.seconds(5),
  bootTimeout: Duration.seconds(20)
})

/** A fresh engine (own home, own store) on the emulator, for one test. */
const withEngine = <A, E>(effect: Effect.Effect<A, E, SkyRepl>) =>
  Effect.gen(function* () {
    const { moto, dir } = yield* Emulator
    const home = join(dir, `home-${Math.random().toString(36).slice(2)}`)
    return yield* effect.pipe(
      Effect.provide(
        SkyRepl.layer({
          // One provider home (its key pairs) for every engine, as for one user with several stores.
          providers: [AwsProvider.layer(optionsFor(moto, join(dir, "shared")))],
          store: SqliteStore.layer({ filename: join(home, "state.db") }),
          config: settings(home)
        })
      )
    )
  })

const text = (chunks: ReadonlyArray<OutputChunk>, stream: "stdout" | "stderr") =>
  Buffer.concat(chunks.filter((c) => c.stream === stream).map((c) => Buffer.from(c.data))).toString("utf8")

const instanceIdOf = (moto: MotoServer, name: string, region: string = REGION) =>
  Effect.map(motoInstances(moto.url, region), (all) => all.find((i) => i.name === name))

/** Polls moto until the instance named `name` is terminated. */
const awaitTerminated = (moto: MotoServer, name: string, timeout: Duration.DurationInput, region: string = REGION) =>
  Effect.gen(function* () {
    const deadline = Date.now() + Duration.toMillis(Duration.decode(timeout))
    for (;;) {
      const found = yield* instanceIdOf(moto, name, region)
      if (found?.state === "terminated") return found
      if (Date.now() > deadline) return yield* Effect.die(new Error(`${name} is ${found?.state ?? "unknown to moto"}, not terminated`))
      yield* Effect.sleep(Duration.millis(100))
    }
  })

describe("aws end to end, through the boot harness", () => {
  layer(emulator, { excludeTestServices: true, timeout: Duration.seconds(60) })((it) => {
    it.effect(
      "launch: output, exit code, tags, shutdown behaviour; the instance ends terminated in moto",
      () =>
        Effect.gen(function* () {
          const { moto, harness } = yield* Emulator
          const { chunks, result, name, tracked } = yield* withEngine(
            Effect.gen(function* () {
              const out = yield* Effect.scoped(
                Effect.gen(function* () {
                  const run = yield* launch({ provider: "aws", command: "echo hello; echo oops >&2; exit 3" })
                  const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(run.output))
                  return { chunks, result: yield* run.result, name: run.instance.name }
                })
              )
              return { ...out, tracked: yield* listInstances() }
            })
          )
          expect(text(chunks, "stdout")).toBe("hello\n")
          expect(text(chunks, "stderr")).toBe("oops\n")
          expect(result).toMatchObject({ state: "failed", exitCode: 3 })
          const record = tracked.find((i) => i.name === name)
          expect(record?.state).toBe("terminated")
          expect(record?.region).toBe(REGION)

          const instance = yield* awaitTerminated(moto, name, Duration.seconds(10))
          expect(instance.managed).toBe(true)
          expect(yield* shutdownBehaviour(moto.url, instance.id)).toBe("terminate")
          const tags = yield* instanceTags(moto.url, instance.id)
          expect(tags["Name"]).toBe(name)
          expect(tags["skyrepl:control-id"]).toBe(name.split("-")[1])
          expect(Date.parse(tags["skyrepl:expires-at"] ?? "")).toBeGreaterThan(Date.now())
          yield* harness.awaitStatus(instance.id, "ended", Duration.seconds(10))
        }),
      60_000
    )

    it.effect(
      "cancel ends the run and terminates the instance",
      () =>
        Effect.gen(function* () {
          const { moto, harness } = yield* Emulator
          const { result, name } = yield* withEngine(
            Effect.scoped(
              Effect.gen(function* () {
                const run = yield* launch({ provider: "aws", command: "echo started; sleep 600" })
                // Wait for the run to really be going on the instance before cancelling it.
                yield* run.output.pipe(Stream.take(1), Stream.runDrain)
                const cancelled = yield* run.cancel
                expect(cancelled).toBeDefined()
                return { result: yield* run.result, name: run.instance.name }
              })
            )
          )
          expect(result.state).toBe("cancelled")
          const instance = yield* awaitTerminated(moto, name, Duration.seconds(10))
          yield* harness.awaitStatus(instance.id, "ended", Duration.seconds(10))
        }),
      60_000
    )

    it.effect(
      "dead-man switch: with its controller killed, the instance powers itself off and moto terminates it",
      () =>
        Effect.gen(function* () {
          const { moto, harness, dir } = yield* Emulator
          const home = join(dir, "owner-home")
          const child = spawn(bun, [join(import.meta.dirname, "fixtures", "owner.ts"), home, "sleep 600"], {
            env: {
              ...process.env,
              SKYREPL_AWS_ENDPOINT: moto.url,
              AWS_ACCESS_KEY_ID: motoCredentials.accessKeyId,
              AWS_SECRET_ACCESS_KEY: motoCredentials.secretAccessKey,
              AWS_REGION: OWNER_REGION,
              XDG_CACHE_HOME: join(dir, "owner-cache"),
              SKYREPL_HEARTBEAT_INTERVAL: "250ms",
              SKYREPL_DEADMAN_TIMEOUT: "3s",
              SKYREPL_LEASE_TTL: "3s"
            },
            stdio: ["ignore", "pipe", "pipe"]
          })
          yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
          let out = ""
          let err = ""
          const launched = yield* Effect.async<{ readonly name: string }, Error>((resume) => {
            child.stderr?.on("data", (d: Buffer) => (err += d.toString()))
            child.stdout?.on("data", (d: Buffer) => {
              out += d.toString()
              // Effect's logger writes to stdout too; the launch is the one JSON line.
              for (const line of out.split("\n").filter((l) => l.startsWith("{"))) {
                const parsed: unknown = JSON.parse(line)
                if (typeof parsed === "object" && parsed !== null && "name" in parsed && typeof parsed.name === "string") {
                  resume(Effect.succeed({ name: parsed.name }))
                }
              }
            })
            child.once("exit", (code) => resume(Effect.fail(new Error(`the owner exited (${code}) before launching: ${out} ${err}`))))
          }).pipe(
            Effect.timeoutFail({ duration: Duration.seconds(30), onTimeout: () => new Error(`the owner did not launch: ${out} ${err}`) })
          )
          const instance = yield* instanceIdOf(moto, launched.name, OWNER_REGION)
          expect(instance?.state).toBe("running")
          if (instance === undefined) return
          yield* harness.awaitStatus(instance.id, "booted", Duration.seconds(5))

          child.kill("SIGKILL")
          // 3 s of silence, then the agent's power-off reaches the harness, which terminates in moto.
          yield* awaitTerminated(moto, launched.name, Duration.seconds(30), OWNER_REGION)
          const seen = (yield* harness.instances).find((i) => i.instanceId === instance.id)
          expect(seen?.poweredOff).toBe("terminate")
          expect(seen?.powerRequests[0]).toMatch(/^poweroff/)
        }).pipe(Effect.scoped),
      60_000
    )

    it.effect(
      "a snapshot of a running instance launches as a spec, and its run works like every other",
      () =>
        Effect.gen(function* () {
          const { moto } = yield* Emulator
          const { snapshot, out, name } = yield* withEngine(
            Effect.gen(function* () {
              const snapshot = yield* Effect.scoped(
                Effect.gen(function* () {
                  const source = yield* launch({ provider: "aws", command: "sleep 30" })
                  return yield* createSnapshot(source.id, "e2e base")
                })
              )
              const { out, name } = yield* Effect.scoped(
                Effect.gen(function* () {
                  const run = yield* launch({ provider: "aws", spec: snapshot.id, command: "echo from the snapshot" })
                  const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(run.output))
                  expect(yield* run.result).toMatchObject({ state: "succeeded", exitCode: 0 })
                  return { out: text(chunks, "stdout"), name: run.instance.name }
                })
              )
              yield* deleteSnapshot("aws", snapshot.id, REGION)
              return { snapshot, out, name }
            })
          )
          expect(out).toBe("from the snapshot\n")
          const instance = yield* awaitTerminated(moto, name, Duration.seconds(10))
          expect((yield* rawInstance(moto.url, instance.id))?.ImageId).toBe(snapshot.id)
        }),
      60_000
    )

    it.effect(
      "a Promise-client process that leaves with process.exit terminates its instance before it is gone",
      () =>
        Effect.gen(function* () {
          const { moto, dir } = yield* Emulator
          const child = yield* Effect.promise(() =>
            execa(bun, [join(import.meta.dirname, "fixtures", "exit-abruptly.ts"), join(dir, "exiting-home"), "sleep 600"], {
              env: {
                SKYREPL_AWS_ENDPOINT: moto.url,
                AWS_ACCESS_KEY_ID: motoCredentials.accessKeyId,
                AWS_SECRET_ACCESS_KEY: motoCredentials.secretAccessKey,
                AWS_REGION: EXITING_REGION,
                XDG_CACHE_HOME: join(dir, "exiting-cache"),
                // Neither the dead-man switch nor a lease could end it within this test.
                SKYREPL_DEADMAN_TIMEOUT: "10m",
                SKYREPL_LEASE_TTL: "10m"
              },
              reject: false,
              timeout: 60_000
            })
          )
          expect(child.exitCode, child.stderr).toBe(0)
          const line = child.stdout.split("\n").find((l) => l.startsWith("{"))
          const launched: unknown = JSON.parse(line ?? "null")
          if (typeof launched !== "object" || launched === null || !("name" in launched) || typeof launched.name !== "string") {
            throw new Error(`no launch line in ${child.stdout}`)
          }
          // Asked as soon as the process is gone: only its exit hook can have ended the instance.
          const instance = yield* instanceIdOf(moto, launched.name, EXITING_REGION)
          expect(["shutting-down", "terminated"]).toContain(instance?.state)
        }),
      60_000
    )
  })
})
