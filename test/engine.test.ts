import { AGENT_PROTOCOL_VERSION, type AllocationFilter, attach, type AttachOptions, type InstanceFilter, listAllocations, type RunFilter, describeConfigError, type DurationOption, type LaunchOptions, type ScanOptions, beforeAnythingStarted, type Bootstrap, cancel, getRun, launch, listInstances, listRuns, type ParsedSpec, Provider, ProviderError, scanOrphans, SkyRepl, type SkyReplClient, type SkyReplSettings, Store, StoreError, createTestRepl, type TestLaunchDefaults } from "@skyrepl/core"
import { LocalApi, LocalProvider } from "@skyrepl/provider-local"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { Chunk, type ConfigError, Deferred, Duration, Effect, Exit, Fiber, Layer, LogLevel, Logger, Option, Scope, Stream } from "effect"
import { execa } from "execa"
import { spawnSync } from "node:child_process"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { createServer, request } from "node:http"
import { join } from "node:path"
import { gzipSync } from "node:zlib"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { makeClient } from "../packages/store-sqlite/src/client.ts"
import { useSkyRepl } from "@skyrepl/core/jest"
import { bunBin, engineLayer, eventually, type Owner, processesOf, processesRunning, removeHome, startOwner, tempHome, testSettings, text } from "./support.ts"

let home: string
beforeEach(() => {
  home = tempHome()
})
afterEach(() => removeHome(home))

const runEngine = <A, E>(effect: Effect.Effect<A, E, SkyRepl>, overrides = {}) =>
  Effect.runPromise(effect.pipe(Effect.provide(engineLayer(home, overrides))))

/** Whether this process may make pid namespaces and choose the pids in them (root, as here). */
const pidNamespaces = spawnSync("unshare", ["--pid", "--fork", "--mount-proc", "sh", "-c", "echo 500 > /proc/sys/kernel/ns_last_pid"]).status === 0

/** A value of the wrong type, as plain JavaScript (or a cast) can pass it. */
const smuggled = <T>(value: unknown): T => value as T

const collect = <A, E, R>(stream: Stream.Stream<A, E, R>) => Stream.runCollect(stream).pipe(Effect.map(Chunk.toReadonlyArray))

/** V0, V1, … of 100,000 bytes each: past one variable's limit together, not one by one. */
const manyLargeVariables = (count: number): Record<string, string> =>
  Object.fromEntries(Array.from({ length: count }, (_, i) => [`V${i}`, "v".repeat(100_000)]))

describe("launch", () => {
  it("runs echo, streams its output and terminates the instance", async () => {
    const { chunks, result, name, instances } = await runEngine(
      Effect.gen(function* () {
        const { chunks, result, name } = yield* Effect.scoped(
          Effect.gen(function* () {
            const run = yield* launch({ command: "echo hello; echo oops >&2" })
            const chunks = yield* collect(run.output)
            return { chunks, result: yield* run.result, name: run.instance.name }
          })
        )
        return { chunks, result, name, instances: yield* listInstances() }
      })
    )
    expect(text(chunks)).toBe("hello\n")
    expect(text(chunks, "stderr")).toBe("oops\n")
    expect(result).toMatchObject({ state: "succeeded", exitCode: 0 })
    expect(instances.find((i) => i.name === name)?.state).toBe("terminated")
    expect(await processesOf(name)).toEqual([])
  })

  it("reports a non-zero exit code as a failed run", async () => {
    const result = await runEngine(Effect.scoped(Effect.flatMap(launch({ command: "exit 7" }), (r) => r.result)))
    expect(result).toMatchObject({ state: "failed", exitCode: 7 })
  })

  it("passes env to the command", async () => {
    const out = await runEngine(
      Effect.scoped(Effect.flatMap(launch({ command: 'echo "$FOO-$BAR"', env: { FOO: "bar", BAR: "baz qux" } }), (r) => collect(r.output)))
    )
    expect(text(out)).toBe("bar-baz qux\n")
  })

  it("runs in its own hostname and pid namespace when isolation is available", async () => {
    const { out, name } = await runEngine(
      Effect.scoped(
        Effect.gen(function* () {
          const run = yield* launch({ command: "hostname; echo $$" })
          return { out: text(yield* collect(run.output)), name: run.instance.name }
        })
      )
    )
    const [host, pid] = out.trim().split("\n")
    expect(host).toBe(name)
    // Inside a fresh pid namespace the agent is pid 1, so the shell gets a small pid.
    expect(Number(pid)).toBeLessThan(100)
  })

  it("runs a command with nearly 2 MiB of variables: the size refused below is not too strict", async () => {
    const env = manyLargeVariables(19)
    const out = await runEngine(
      Effect.scoped(
        Effect.gen(function* () {
          const run = yield* launch({ command: 'echo "${#V0} ${#V18}"', env })
          const output = text(yield* collect(run.output))
          return { output, result: yield* run.result }
        })
      )
    )
    expect([out.output, out.result.state]).toEqual(["100000 100000\n", "succeeded"])
  })

  it("refuses an invalid spec and an unknown provider before writing anything", async () => {
    const outcomes = await runEngine(
      Effect.gen(function* () {
        const badSpec = yield* Effect.exit(Effect.scoped(launch({ command: "echo", spec: "gpu:h100" })))
        const badProvider = yield* Effect.exit(Effect.scoped(launch({ command: "echo", provider: "nimbus" })))
        const badEnv = yield* Effect.exit(Effect.scoped(launch({ command: "echo", env: { "1X": "y" } })))
        const badDuration = yield* Effect.exit(Effect.scoped(launch({ command: "echo", maxDuration: Duration.zero })))
        const emptyCommand = yield* Effect.exit(Effect.scoped(launch({ command: "" })))
        const relativeWorkdir = yield* Effect.exit(Effect.scoped(launch({ command: "echo", workdir: "tmp" })))
        const reservedEnv = yield* Effect.exit(Effect.scoped(launch({ command: "echo", env: { SKYREPL_INSTANCE: "x" } })))
        const hugeCommand = yield* Effect.exit(Effect.scoped(launch({ command: `echo ${"x".repeat(200_000)}` })))
        const nulEnv = yield* Effect.exit(Effect.scoped(launch({ command: "echo", env: { A: "a\0b" } })))
        const hugeEnv = yield* Effect.exit(Effect.scoped(launch({ command: "echo", env: manyLargeVariables(21) })))
        const wordDuration = yield* Effect.exit(Effect.scoped(launch({ command: "echo", maxDuration: smuggled<DurationOption>("banana") })))
        const badMinAge = yield* Effect.exit(scanOrphans({ minAge: smuggled<DurationOption>("banana") }))
        return {
          badSpec,
          badProvider,
          badEnv,
          badDuration,
          emptyCommand,
          relativeWorkdir,
          reservedEnv,
          wordDuration,
          badMinAge,
          hugeCommand,
          nulEnv,
          hugeEnv,
          runs: yield* listRuns(),
          instances: yield* listInstances()
        }
      })
    )
    const tag = (exit: Exit.Exit<unknown, { readonly _tag: string }>) => (Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error._tag : "none")
    expect(tag(outcomes.badSpec)).toBe("InvalidSpec")
    expect(tag(outcomes.badProvider)).toBe("UnknownProvider")
    expect(tag(outcomes.badEnv)).toBe("InvalidLaunchOptions")
    expect(tag(outcomes.badDuration)).toBe("InvalidLaunchOptions")
    // One line naming the field and the reason, not the schema's type.
    const message = (exit: Exit.Exit<unknown, { readonly message: string }>) =>
      Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error.message : "none"
    expect(message(outcomes.badEnv)).toBe('env: "1X" is not a variable name (letters, digits and _, not starting with a digit)')
    expect(message(outcomes.emptyCommand)).toBe("command must not be empty")
    expect(message(outcomes.relativeWorkdir)).toBe("workdir must be an absolute path")
    expect(message(outcomes.hugeCommand)).toBe("command is 200005 bytes; Linux passes at most 131071 bytes in one argument or variable")
    expect(message(outcomes.nulEnv)).toBe("env: A holds a NUL byte, which no process can be given")
    expect(message(outcomes.hugeEnv)).toBe(
      "the command and env are 2100303 bytes together; Linux starts a process with at most 2097152 bytes of arguments and variables, and 65536 of them are kept for the instance's own (pass large values in a file)"
    )
    expect(message(outcomes.wordDuration)).toBe('maxDuration: "banana" is not a duration (give e.g. "30s", "5m", Duration.minutes(5) or a number of milliseconds)')
    expect([tag(outcomes.badMinAge), message(outcomes.badMinAge)]).toEqual([
      "InvalidScanOptions",
      'minAge: "banana" is not a duration (give e.g. "30s", "5m", Duration.minutes(5) or a number of milliseconds)'
    ])
    expect(message(outcomes.reservedEnv)).toBe(
      'env: SKYREPL_INSTANCE is set by SkyREPL itself and cannot be given (docs/configuration.md, "Set by SkyREPL, not by you")'
    )
    expect(outcomes.runs).toEqual([])
    expect(outcomes.instances).toEqual([])
  })
})

describe("misuse from code (plain JavaScript, or a cast)", () => {
  const failure = (exit: Exit.Exit<unknown, unknown>): string => {
    if (Exit.isSuccess(exit)) return "succeeded"
    if (exit.cause._tag !== "Fail") return `not a failure: ${exit.cause._tag}`
    const error = exit.cause.error as { readonly _tag?: string; readonly message?: string }
    return `${error._tag}: ${error.message}`
  }

  it("a run id that is not a string names no run: RunNotFound from getRun, cancel and attach, not a StoreError", async () => {
    const outcomes = await runEngine(
      Effect.forEach([{}, 42, ["a"], null], (id) =>
        Effect.all([
          Effect.exit(getRun(smuggled<string>(id))),
          Effect.exit(cancel(smuggled<string>(id))),
          Effect.exit(Stream.runDrain(attach(smuggled<string>(id))))
        ]).pipe(Effect.map((exits) => exits.map(failure)))
      )
    )
    expect(outcomes).toEqual(
      ["{}", "42", '["a"]', "null"].map((shown) => Array.from({ length: 3 }, () => `RunNotFound: no run with id "${shown}"`))
    )
  })

  it("bad launch, attach and sweep options are typed errors, with nothing recorded and nothing reaped", async () => {
    const outcomes = await runEngine(
      Effect.gen(function* () {
        const launched = (options: unknown) => Effect.exit(Effect.scoped(launch(smuggled<LaunchOptions>(options))))
        const attached = (options: unknown) => Effect.exit(Stream.runDrain(attach("any", smuggled<AttachOptions>(options))))
        const swept = (options: unknown) => Effect.exit(scanOrphans(smuggled<ScanOptions>(options)))
        return {
          launch: [
            yield* launched({ command: "  \n " }),
            yield* launched(null),
            yield* launched({ command: "true", spot: "yes" }),
            yield* launched({ command: "true", workdir: "/tmp\0x" }),
            // A misspelt time limit was dropped: a run meant to stop after a minute ran unbounded.
            yield* launched({ command: "true", maxduration: "1 minute" }),
            yield* launched({ command: "true", onProgress: "log" })
          ].map(failure),
          attach: [yield* attached({ from: { stdout: Number.NaN } }), yield* attached({ from: { stderr: 2.5 } }), yield* attached(null)].map(failure),
          sweep: [yield* swept({ reap: true, minAge: Number.NaN }), yield* swept({ reap: true, minAge: -1 }), yield* swept(null)].map(failure),
          twice: yield* scanOrphans({ providers: ["local", "local"] }),
          runs: yield* listRuns(),
          instances: yield* listInstances()
        }
      })
    )
    expect(outcomes.launch).toEqual([
      "InvalidLaunchOptions: command must not be only whitespace",
      "InvalidLaunchOptions: launch options must be an object, not null",
      'InvalidLaunchOptions: spot: Expected boolean, actual "yes"',
      "InvalidLaunchOptions: workdir holds a NUL byte, which no process can be given",
      'InvalidLaunchOptions: "maxduration" is not a launch option (command, provider, spec, env, workdir, region, spot, maxDuration, onProgress)',
      'InvalidLaunchOptions: onProgress must be a function, not "log"'
    ])
    // A NaN offset came back as the first chunk's offset, and 2.5 as one that lied about its bytes.
    expect(outcomes.attach).toEqual([
      "InvalidAttachOptions: from.stdout: Expected an integer, actual NaN",
      "InvalidAttachOptions: from.stderr: Expected an integer, actual 2.5",
      "InvalidAttachOptions: attach options must be an object, not null"
    ])
    // Effect reads a NaN or negative number of milliseconds as zero: a sweep with no margin.
    expect(outcomes.sweep).toEqual([
      "InvalidScanOptions: minAge: NaN is not a duration (a number of milliseconds must be 0 or more)",
      "InvalidScanOptions: minAge: -1 is not a duration (a number of milliseconds must be 0 or more)",
      "InvalidScanOptions: scan options must be an object, not null"
    ])
    expect(outcomes.twice.providers).toEqual(["local"])
    expect(outcomes.runs).toEqual([])
    expect(outcomes.instances).toEqual([])
  })

  it("durations Effect would misread (a bigint, under a millisecond, infinite) are refused naming the option, with nothing recorded", async () => {
    const outcomes = await runEngine(
      Effect.gen(function* () {
        const launched = (maxDuration: unknown) => Effect.exit(Effect.scoped(launch({ command: "true", maxDuration: smuggled<DurationOption>(maxDuration) })))
        const swept = (minAge: unknown) => Effect.exit(scanOrphans({ reap: true, ownOnly: true, minAge: smuggled<DurationOption>(minAge) }))
        return {
          // Effect reads a bigint as nanoseconds: 10n was a 10 ns limit, the run killed at once.
          launch: [yield* launched(10n), yield* launched(0.5), yield* launched(Duration.nanos(10n)), yield* launched(Number.POSITIVE_INFINITY)].map(failure),
          // An infinite margin left every orphan too young: a sweep that quietly did nothing.
          sweep: [yield* swept(Number.POSITIVE_INFINITY), yield* swept(Duration.infinity), yield* swept(10n), yield* swept(0.5)].map(failure),
          runs: yield* listRuns(),
          instances: yield* listInstances()
        }
      })
    )
    expect(outcomes.launch).toEqual([
      'InvalidLaunchOptions: maxDuration: 10n is a bigint, which Effect reads as nanoseconds (a number is milliseconds); give a number of milliseconds, "30s" or Duration.seconds(30)',
      "InvalidLaunchOptions: maxDuration: 0.5 is under a millisecond; give at least 1ms",
      "InvalidLaunchOptions: maxDuration: Duration 10ns is under a millisecond; give at least 1ms",
      "InvalidLaunchOptions: maxDuration: Infinity is not a finite duration"
    ])
    expect(outcomes.sweep).toEqual([
      "InvalidScanOptions: minAge: Infinity is not a finite duration",
      "InvalidScanOptions: minAge: Duration Infinity is not a finite duration",
      'InvalidScanOptions: minAge: 10n is a bigint, which Effect reads as nanoseconds (a number is milliseconds); give a number of milliseconds, "30s" or Duration.seconds(30)',
      "InvalidScanOptions: minAge: 0.5 is under a millisecond; give at least 1ms"
    ])
    expect([outcomes.runs, outcomes.instances]).toEqual([[], []])
  })

  it("a boxed primitive (new String, new Number, new Boolean) anywhere in options is named as one, by every entry point", async () => {
    const boxed = (value: string | number | boolean): unknown => Object(value)
    const outcomes = await runEngine(
      Effect.gen(function* () {
        const launched = (options: unknown) => Effect.exit(Effect.scoped(launch(smuggled<LaunchOptions>(options))))
        return {
          launch: [
            // Was "command: Expected string, actual x", as if a string had been refused as not one.
            yield* launched({ command: boxed("x") }),
            yield* launched({ command: "true", env: { A: boxed("y") } }),
            yield* launched({ command: "true", spot: boxed(false) }),
            yield* launched({ command: "true", maxDuration: boxed("5m") }),
            // Its keys "0" and "1" were named as options it does not know.
            yield* launched(boxed("ls"))
          ].map(failure),
          others: [
            yield* Effect.exit(Stream.runDrain(attach("any", smuggled<AttachOptions>({ from: { stdout: boxed(2) } })))),
            yield* Effect.exit(scanOrphans(smuggled<ScanOptions>({ providers: [boxed("local")] }))),
            yield* Effect.exit(scanOrphans(smuggled<ScanOptions>({ reap: boxed(false) }))),
            yield* Effect.exit(listRuns(smuggled<RunFilter>({ limit: boxed(5) }))),
            // Shown as JSON, this read as `no run with id "r1"`.
            yield* Effect.exit(getRun(smuggled<string>(boxed("r1"))))
          ].map(failure),
          runs: yield* listRuns(),
          instances: yield* listInstances()
        }
      })
    )
    expect(outcomes.launch).toEqual([
      'InvalidLaunchOptions: command: new String("x") is an object, not a string; give the value itself',
      'InvalidLaunchOptions: env.A: new String("y") is an object, not a string; give the value itself',
      "InvalidLaunchOptions: spot: new Boolean(false) is an object, not a boolean; give the value itself",
      'InvalidLaunchOptions: maxDuration: new String("5m") is an object, not a string; give the value itself',
      'InvalidLaunchOptions: launch options must be an object, not new String("ls")'
    ])
    expect(outcomes.others).toEqual([
      "InvalidAttachOptions: from.stdout: new Number(2) is an object, not a number; give the value itself",
      'InvalidScanOptions: providers.0: new String("local") is an object, not a string; give the value itself',
      "InvalidScanOptions: reap: new Boolean(false) is an object, not a boolean; give the value itself",
      "InvalidFilter: listRuns: limit: new Number(5) is an object, not a number; give the value itself",
      'RunNotFound: no run with id "new String("r1")"'
    ])
    expect([outcomes.runs, outcomes.instances]).toEqual([[], []])
    const made = SkyRepl.make({ providers: [LocalProvider.layer({ home })], store: SqliteStore.layer({ filename: join(home, "state.db") }), config: { ...testSettings(home), home: smuggled<string>(boxed(home)) } })
    await expect(made).rejects.toMatchObject({ _op: "InvalidData", message: `config.home: new String(${JSON.stringify(home)}) is an object, not a string; give the value itself` })
    const client = await SkyRepl.make({ providers: [LocalProvider.layer({ home })], store: SqliteStore.layer({ filename: join(home, "state.db") }), config: testSettings(home) })
    try {
      // Spread, the String was taken as variables "0", "1" and "2".
      await expect(createTestRepl(client, { env: smuggled<Record<string, string>>(boxed("X=1")) }).exec("true")).rejects.toMatchObject({
        _tag: "InvalidLaunchOptions",
        message: `the test's launch defaults: env: new String("X=1") is an object, not a string; give the value itself`
      })
      expect(await client.listRuns()).toEqual([])
    } finally {
      await client.dispose()
    }
  })

  it("listing filters of the wrong shape are an InvalidFilter, from Effect and from the Promise client", async () => {
    const outcomes = await runEngine(
      Effect.gen(function* () {
        return [
          // A string's letters were taken as seven states: no run, silently.
          yield* Effect.exit(listRuns(smuggled<RunFilter>({ states: "running" }))),
          yield* Effect.exit(listRuns(smuggled<RunFilter>({ states: ["runing"] }))),
          // A TypeError (filter.states.includes is not a function), thrown as a defect.
          yield* Effect.exit(listInstances(smuggled<InstanceFilter>({ states: 5 }))),
          yield* Effect.exit(listInstances(smuggled<InstanceFilter>("allocated"))),
          yield* Effect.exit(listAllocations(smuggled<AllocationFilter>({ states: ["live"] })))
        ].map(failure)
      })
    )
    expect(outcomes).toEqual([
      'InvalidFilter: listRuns: states: Expected ReadonlyArray<"pending" | "provisioning" | "running" | "succeeded" | "failed" | "cancelled" | "timed_out">, actual "running"',
      'InvalidFilter: listRuns: states.0: "runing" is not a run state (pending, provisioning, running, succeeded, failed, cancelled, timed_out)',
      expect.stringMatching(/^InvalidFilter: listInstances: states: Expected ReadonlyArray<.*>, actual 5$/),
      'InvalidFilter: listInstances: the filter must be an object, not "allocated"',
      'InvalidFilter: listAllocations: states.0: "live" is not an allocation state (active, released)'
    ])
    const client = await SkyRepl.make({ providers: [LocalProvider.layer({ home })], store: SqliteStore.layer({ filename: join(home, "state.db") }), config: testSettings(home) })
    try {
      await expect(client.listInstances(smuggled<InstanceFilter>({ states: 5 }))).rejects.toMatchObject({ _tag: "InvalidFilter" })
      // The client's listAllocations takes the filter the Effect API's does.
      expect(await client.listAllocations({ states: ["active"] })).toEqual([])
      await expect(client.listAllocations(smuggled<AllocationFilter>({ states: "active" }))).rejects.toMatchObject({ _tag: "InvalidFilter" })
    } finally {
      await client.dispose()
    }
  })

  it("a key attach, scanOrphans or a listing does not know is refused, not dropped; a bad run limit is an InvalidFilter", async () => {
    const outcomes = await runEngine(
      Effect.gen(function* () {
        yield* Effect.scoped(Effect.flatMap(launch({ command: "echo hi" }), (run) => run.result))
        const runId = (yield* listRuns())[0]!.id
        return [
          // Replayed from the first byte: the offset was dropped with its misspelt key.
          yield* Effect.exit(Stream.runDrain(attach(runId, smuggled<AttachOptions>({ form: { stdout: 2 } })))),
          yield* Effect.exit(Stream.runDrain(attach(runId, smuggled<AttachOptions>({ from: { stdout: 2, sterr: 1 } })))),
          // Dropped, `ownonly` reaped other homes' instances too, and `kep` what was to be kept.
          yield* Effect.exit(scanOrphans(smuggled<ScanOptions>({ reap: true, minAge: 0, ownonly: true }))),
          yield* Effect.exit(scanOrphans(smuggled<ScanOptions>({ reap: true, minAge: 0, kep: ["repl-x"] }))),
          // Each listed everything.
          yield* Effect.exit(listRuns(smuggled<RunFilter>({ state: ["running"] }))),
          yield* Effect.exit(listInstances(smuggled<InstanceFilter>({ limit: 5 }))),
          yield* Effect.exit(listAllocations(smuggled<AllocationFilter>({ instance: "x" }))),
          // A StoreError, as if the database had failed.
          yield* Effect.exit(listRuns(smuggled<RunFilter>({ limit: -1 }))),
          yield* Effect.exit(listRuns(smuggled<RunFilter>({ limit: "5" })))
        ].map(failure)
      })
    )
    expect(outcomes).toEqual([
      'InvalidAttachOptions: "form" is not an attach option (from, follow)',
      'InvalidAttachOptions: from: "sterr" is not a stream (stdout, stderr)',
      'InvalidScanOptions: "ownonly" is not a scan option (providers, reap, minAge, keep, ownOnly)',
      'InvalidScanOptions: "kep" is not a scan option (providers, reap, minAge, keep, ownOnly)',
      'InvalidFilter: listRuns: "state" is not one of its filters (states, limit)',
      'InvalidFilter: listInstances: "limit" is not one of its filters (states, provider, ownerControllerId)',
      'InvalidFilter: listAllocations: "instance" is not one of its filters (states, instanceId)',
      "InvalidFilter: listRuns: limit: must be a whole number, 0 or more, not -1",
      'InvalidFilter: listRuns: limit: must be a whole number, 0 or more, not "5"'
    ])
  })

  it("SkyRepl.layer options and settings of the wrong shape are a ConfigError naming the field, before the store is opened", async () => {
    const store = SqliteStore.layer({ filename: join(home, "state.db") })
    const local = LocalProvider.layer({ home })
    const refused = async (options: unknown): Promise<string> => {
      const exit = await Effect.runPromiseExit(listRuns().pipe(Effect.provide(SkyRepl.layer(smuggled<Parameters<typeof SkyRepl.layer>[0]>(options)))))
      if (Exit.isSuccess(exit)) return "succeeded"
      const error = exit.cause._tag === "Fail" ? exit.cause.error : null
      return error !== null && typeof error === "object" && "_op" in error ? describeConfigError(smuggled<ConfigError.ConfigError>(error)) : `not a ConfigError: ${String(exit.cause)}`
    }
    // Each was a TypeError (or Effect's "Invalid DurationInput") thrown while the engine was built.
    expect(await refused({ providers: [local], store, config: { home, leaseTtl: "30s" } })).toBe('leaseTtl: must be a Duration (e.g. Duration.seconds(30)), not "30s"')
    expect(await refused({ providers: [local], store, config: { home: 5 } })).toBe("home: Expected string, actual 5")
    expect(await refused({ store, config: { home } })).toBe("providers: is missing")
    expect(await refused({ providers: [local, null], store, config: { home } })).toBe("providers.1: must be a provider layer or a { id, layer } entry with a non-empty id, not null")
    expect(await refused({ providers: [local], config: { home } })).toBe("store: is missing")
    expect(await refused({ providers: [local], store, config: null })).toBe("config: must be a settings layer or an object of settings, not null")
    expect(await refused(null)).toBe("SkyRepl.layer takes { providers, store, config? }, not null")
    expect(existsSync(join(home, "state.db"))).toBe(false)
  })

  it("SkyRepl.layer refuses a provider id given twice, and a lazy entry whose layer builds another id", async () => {
    const store = SqliteStore.layer({ filename: join(home, "state.db") })
    const twice = await Effect.runPromiseExit(
      listRuns().pipe(Effect.provide(SkyRepl.layer({ providers: [LocalProvider.layer({ home }), { id: "local", layer: LocalProvider.layer({ home }) }], store, config: testSettings(home) })))
    )
    expect(Exit.isFailure(twice) && twice.cause._tag === "Fail" ? twice.cause.error : null).toMatchObject({
      _op: "InvalidData",
      path: ["providers"],
      message: 'provider "local" is given more than once; each id names one provider'
    })
    // The instance would be recorded under "local", which this engine does not have, so it
    // could not be terminated: it was left "terminating" for some other process.
    const mislabelled = SkyRepl.layer({
      providers: [{ id: "sandbox", layer: LocalProvider.layer({ home }) }],
      store,
      config: testSettings(home, { defaultProvider: "sandbox" })
    })
    const { launched, instances } = await Effect.runPromise(
      Effect.gen(function* () {
        const launched = failure(yield* Effect.exit(Effect.scoped(Effect.flatMap(launch({ command: "true" }), (run) => run.result))))
        return { launched, instances: yield* listInstances() }
      }).pipe(Effect.provide(mislabelled))
    )
    expect(launched).toBe('ProviderError: provider "sandbox" could not be set up: its layer builds provider "local"; give it as { id: "local", layer }')
    expect(instances).toEqual([])
  })
  it("useSkyRepl says the engine could not start when its beforeAll failed, not that it was used at module level", async () => {
    // Jest's hooks are globals; Jest runs the tests of a file whose beforeAll failed.
    const hooks = new Map<string, () => Promise<void>>()
    const names = ["beforeAll", "beforeEach", "afterEach", "afterAll"] as const
    for (const name of names) Reflect.set(globalThis, name, (fn: () => Promise<void>) => hooks.set(name, fn))
    try {
      const repl = useSkyRepl(() => ({ providers: [LocalProvider.layer({ home })], store: SqliteStore.layerFromHome(smuggled<string>(5)) }))
      await expect(hooks.get("beforeAll")?.()).rejects.toMatchObject({ _tag: "StoreError" })
      await hooks.get("beforeEach")?.()
      await expect(repl.exec("true")).rejects.toThrow(
        "useSkyRepl: the engine could not be started in beforeAll: SqliteStore.layerFromHome: the home must be a path, not 5"
      )
      await hooks.get("afterEach")?.()
      await hooks.get("afterAll")?.()
    } finally {
      for (const name of names) Reflect.deleteProperty(globalThis, name)
    }
  })

  it("useSkyRepl ends a retried test.concurrent test's attempt that took as many whole milliseconds as the one before", async () => {
    // Jest's hooks and expect are globals; its test record is what currentTestIdentity returns.
    const hooks = new Map<string, () => Promise<void>>()
    const names = ["beforeAll", "beforeEach", "afterEach", "afterAll"] as const
    for (const name of names) Reflect.set(globalThis, name, (fn: () => Promise<void>) => hooks.set(name, fn))
    let current: object | undefined
    const jestExpect = Object.assign(() => undefined, { getState: () => ({ currentTestIdentity: () => current }) })
    const hadExpect = Reflect.has(globalThis, "expect")
    const ownExpect: unknown = Reflect.get(globalThis, "expect")
    Reflect.set(globalThis, "expect", jestExpect)
    try {
      const repl = useSkyRepl(() => ({ providers: [LocalProvider.layer({ home })], store: SqliteStore.layer({ filename: join(home, "state.db") }), config: testSettings(home) }))
      await hooks.get("beforeAll")?.()
      // As jest-circus keeps a test: test_start counts an invocation, test_done sets the
      // duration (whole milliseconds) and replaces the errors array, test_retry empties it.
      const flaky = { concurrent: true, invocations: 1, duration: null as number | null, errors: [] as Array<unknown> }
      current = flaky
      const first = await repl.launch({ command: "exec sleep 600" })
      Object.assign(flaky, { duration: 2, errors: [["failing on purpose"]] })
      Object.assign(flaky, { errors: [], invocations: 2 })
      const second = await repl.launch({ command: "exec sleep 600" })
      // The second attempt passes, in as many milliseconds as the first: its duration is the same.
      Object.assign(flaky, { duration: 2, errors: [] })
      current = { concurrent: false, invocations: 1, duration: null, errors: [] }
      // The next sequential test begins: every concurrent attempt done is over by then.
      await hooks.get("beforeEach")?.()
      expect(await processesOf(first.instance.name)).toEqual([])
      expect(await processesOf(second.instance.name)).toEqual([])
      await hooks.get("afterEach")?.()
    } finally {
      await hooks.get("afterAll")?.()
      for (const name of names) Reflect.deleteProperty(globalThis, name)
      if (hadExpect) Reflect.set(globalThis, "expect", ownExpect)
      else Reflect.deleteProperty(globalThis, "expect")
    }
  })

  it("createTestRepl refuses options, defaults or env that are not objects with an InvalidLaunchOptions naming them, and records nothing", async () => {
    const client = await SkyRepl.make({ providers: [LocalProvider.layer({ home })], store: SqliteStore.layer({ filename: join(home, "state.db") }), config: testSettings(home) })
    const refused = (launched: Promise<unknown>) =>
      launched.then(
        () => "succeeded",
        (error: { readonly _tag?: string; readonly message?: string }) => `${error._tag}: ${error.message}`
      )
    try {
      const repl = createTestRepl(client)
      expect([
        // A TypeError each ("Cannot read properties of undefined (reading 'env')").
        await refused(repl.launch(smuggled<LaunchOptions>(undefined))),
        await refused(repl.launch(smuggled<LaunchOptions>(null))),
        await refused(createTestRepl(client, smuggled<TestLaunchDefaults>(null)).exec("true")),
        // Spread, the string was taken as variables "0", "1" and "2".
        await refused(repl.exec("true", { env: smuggled<Record<string, string>>("X=1") })),
        await refused(createTestRepl(client, { env: smuggled<Record<string, string>>("X=1") }).exec("true", { env: { A: "1" } }))
      ]).toEqual([
        "InvalidLaunchOptions: launch options must be an object, not undefined",
        "InvalidLaunchOptions: launch options must be an object, not null",
        "InvalidLaunchOptions: the test's launch defaults must be an object, not null",
        'InvalidLaunchOptions: env: Expected { readonly [x: string]: string }, actual "X=1"',
        'InvalidLaunchOptions: env: Expected { readonly [x: string]: string }, actual "X=1"'
      ])
      expect(await client.listRuns()).toEqual([])
      // Good ones still merge, a launch's variables over the defaults'.
      const merged = await createTestRepl(client, { env: { A: "a", B: "b" } }).exec("echo $A$B", { env: { B: "c" } })
      expect(merged.stdout).toBe("ac\n")
      // The CLI's duration forms, which launch takes, were a type error as a default.
      expect((await createTestRepl(client, { maxDuration: "1s" }).exec("exec sleep 600")).state).toBe("timed_out")
    } finally {
      await client.dispose()
    }
  })
})

describe("what the controller takes from an agent's token", () => {
  it("an exit whose byte counts it does not hold fails the run, naming what was lost; then the run's output is refused (410), another run's (404)", async () => {
    const outcome = await runEngine(
      Effect.gen(function* () {
        const hub = yield* Effect.flatMap(SkyRepl, (engine) => engine.register)
        return yield* Effect.scoped(
          Effect.gen(function* () {
            const run = yield* launch({ command: "sleep 5; echo important-result" })
            const instance = (yield* listInstances()).find((i) => i.name === run.instance.name)!
            const post = (path: string, body: string) =>
              Effect.promise(async () => {
                const answer = await fetch(`${hub.url}${path}`, {
                  method: "POST",
                  headers: { authorization: `Bearer ${instance.agentToken}`, "x-skyrepl-protocol": String(AGENT_PROTOCOL_VERSION), "content-type": "application/json" },
                  body
                })
                return [answer.status, await answer.json()] as const
              })
            const exit = (runId: string) => JSON.stringify({ runId, exitCode: 0, signal: null, reason: "exited", stdoutBytes: 17, stderrBytes: 0 })
            // What a run holding its agent's token could send: an exit before its output.
            const foreignExit = yield* post("/v1/agent/exit", exit("nosuchrun"))
            const forged = yield* post("/v1/agent/exit", exit(run.id))
            const result = yield* run.result
            const late = yield* post(`/v1/agent/output?runId=${run.id}&stream=stdout&offset=0`, "late output")
            const foreign = yield* post("/v1/agent/output?runId=nosuchrun&stream=stdout&offset=0", "x")
            return { foreignExit, forged, result, late, foreign }
          })
        )
      })
    )
    expect(outcome.foreignExit[0]).toBe(404)
    expect(outcome.forged[0]).toBe(200)
    expect(outcome.result).toMatchObject({
      state: "failed",
      exitCode: 0,
      error: "the run's output is incomplete: the controller never received 17 of its 17 bytes of stdout"
    })
    expect(outcome.late).toEqual([410, { error: `run ${outcome.result.runId} has ended` }])
    expect(outcome.foreign).toEqual([404, { error: "run nosuchrun is not this instance's" }])
  })
})

/**
 * The controller's agent endpoint behind a proxy that spoils the `maxDurationMs` of every run
 * event it passes on (as a controller of another version, or with a bug, might send it). The
 * event stream is rewritten a line at a time; everything else passes as it is.
 */
const spoilingProxy = (target: string) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly close: () => void }>((resume) => {
      const server = createServer((req, res) => {
        const upstream = request(`${target}${req.url ?? ""}`, { method: req.method, headers: req.headers }, (answer) => {
          const events = String(answer.headers["content-type"]).startsWith("text/event-stream")
          const headers = { ...answer.headers }
          if (events) delete headers["content-length"]
          res.writeHead(answer.statusCode ?? 502, headers)
          let pending = ""
          answer.on("data", (chunk: Buffer) => {
            if (!events) return void res.write(chunk)
            pending += chunk.toString("utf8")
            const end = pending.lastIndexOf("\n") + 1
            res.write(pending.slice(0, end).replaceAll('"maxDurationMs":null', '"maxDurationMs":-1'))
            pending = pending.slice(end)
          })
          answer.on("end", () => res.end())
          answer.on("error", () => res.destroy())
        })
        upstream.on("error", () => res.destroy())
        res.on("close", () => upstream.destroy())
        req.pipe(upstream)
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        const port = typeof address === "object" && address !== null ? address.port : 0
        resume(Effect.succeed({ url: `http://127.0.0.1:${port}`, close: () => (server.closeAllConnections(), server.close()) }))
      })
    }),
    (proxy) => Effect.sync(proxy.close)
  )

describe("a run the agent cannot start", () => {
  it("a malformed run event is refused by the agent, and the run ends failed saying why instead of waiting forever", async () => {
    const outcome = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          // The proxy outlives the spawn that starts it, and the engine that launched through it.
          const scope = yield* Effect.scope
          const spoiling = Layer.effect(
            Provider,
            Effect.map(LocalProvider.make({ home }), (local) => ({
              ...local,
              spawn: (name: string, spec: ParsedSpec, bootstrap: Bootstrap) =>
                Effect.flatMap(Scope.extend(spoilingProxy(bootstrap.agentUrl), scope), (proxy) =>
                  local.spawn(name, spec, {
                    ...bootstrap,
                    agentUrl: proxy.url,
                    // The copy the agent may start at once is spoiled alike.
                    ...(bootstrap.run === undefined ? {} : { run: { ...bootstrap.run, maxDurationMs: -1 } })
                  })
                )
            }))
          )
          const layer = SkyRepl.layer({ providers: [spoiling], store: SqliteStore.layer({ filename: join(home, "state.db") }), config: testSettings(home) })
          return yield* Effect.gen(function* () {
            const result = yield* Effect.scoped(Effect.flatMap(launch({ command: "echo never" }), (run) => run.result)).pipe(
              Effect.timeoutFail({ duration: Duration.seconds(20), onTimeout: () => new Error("the launch waited for a run the agent never started") })
            )
            return { result, instances: yield* listInstances() }
          }).pipe(Effect.provide(layer))
        })
      )
    )
    expect(outcome.result).toMatchObject({ state: "failed", exitCode: null, error: "the agent refused the run: maxDurationMs must be a positive number" })
    expect(outcome.instances.map((i) => i.state)).toEqual(["terminated"])
  }, 30_000)

  it("a workdir that is not a directory ends the run failed, its error saying so, and the instance terminated", async () => {
    const missing = join(home, "no-such-workdir")
    const { result, stderr, instance, instances } = await runEngine(
      Effect.gen(function* () {
        const { result, stderr, instance } = yield* Effect.scoped(
          Effect.gen(function* () {
            const run = yield* launch({ command: "echo never", workdir: missing })
            const chunks = yield* collect(run.output)
            const stderr = chunks.filter((c) => c.stream === "stderr").map((c) => Buffer.from(c.data).toString("utf8")).join("")
            return { result: yield* run.result, stderr, instance: run.instance.id }
          })
        )
        return { result, stderr, instance, instances: yield* listInstances() }
      })
    )
    expect(result).toMatchObject({ state: "failed", exitCode: null, error: `the agent refused the run: workdir '${missing}' is not a directory` })
    expect(stderr).toBe(`skyrepl-agent: workdir '${missing}' is not a directory\n`)
    expect(instances.filter((i) => i.id === instance).map((i) => i.state)).toEqual(["terminated"])
  }, 30_000)
})

describe("the sweep", () => {
  it("a provider that cannot be listed now is skipped as failed when every provider is swept, and the others still are; named, it fails", async () => {
    // "flaky" fails at once; "retrying" fails after retries of its own (as the AWS provider's
    // calls do), which the engine must not multiply by retrying them again.
    const calls = { flaky: 0, retrying: 0 }
    const failing = (id: "flaky" | "retrying") =>
      Layer.effect(
        Provider,
        Effect.map(LocalProvider.make({ home }), (local) => ({
          ...local,
          id,
          list: () =>
            Effect.suspend(() => {
              calls[id] += 1
              return Effect.fail(
                new ProviderError({ provider: id, operation: "list", reason: "transient", message: "connection refused (test)", ...(id === "retrying" ? { retried: true } : {}) })
              )
            })
        }))
      )
    const layer = SkyRepl.layer({
      providers: [LocalProvider.layer({ home }), failing("flaky"), failing("retrying")],
      store: SqliteStore.layer({ filename: join(home, "state.db") }),
      config: testSettings(home)
    })
    const { report, named, namedCalls } = await Effect.runPromise(
      Effect.gen(function* () {
        const report = yield* scanOrphans({ minAge: "0s" })
        calls.flaky = 0
        calls.retrying = 0
        const named = yield* Effect.flip(scanOrphans({ providers: ["flaky"] }))
        const retried = yield* Effect.flip(scanOrphans({ providers: ["retrying"] }))
        return { report, named: [named, retried], namedCalls: { ...calls } }
      }).pipe(Effect.provide(layer))
    )
    expect(report.providers).toEqual(["local"])
    expect(report.skipped).toEqual([
      { provider: "flaky", message: "connection refused (test)", failed: true },
      { provider: "retrying", message: "connection refused (test)", failed: true }
    ])
    expect(named).toMatchObject([
      { _tag: "ProviderError", reason: "transient", message: "connection refused (test)" },
      { _tag: "ProviderError", reason: "transient", retried: true }
    ])
    // The engine's own schedule: the first try and five retries; none for what was retried already.
    expect(namedCalls).toEqual({ flaky: 6, retrying: 1 })
  }, 40_000)
})

describe("terminations", () => {
  it("are retried by the engine even after the provider's own retries, unlike other calls", async () => {
    // The first two terminations fail as a provider that retried them itself says (the AWS
    // provider after callRetry); giving up there would leave the instance running.
    let terminations = 0
    const stubborn = Layer.effect(
      Provider,
      Effect.map(LocalProvider.make({ home }), (local) => ({
        ...local,
        terminate: (ref: Parameters<typeof local.terminate>[0]) =>
          Effect.suspend(() => {
            terminations += 1
            return terminations <= 2
              ? Effect.fail(new ProviderError({ provider: "local", operation: "terminate", reason: "transient", message: "refused (test)", retried: true }))
              : local.terminate(ref)
          })
      }))
    )
    const layer = SkyRepl.layer({ providers: [stubborn], store: SqliteStore.layer({ filename: join(home, "state.db") }), config: testSettings(home) })
    const { result, instance, instances } = await Effect.runPromise(
      Effect.gen(function* () {
        const { result, instance } = yield* Effect.scoped(
          Effect.gen(function* () {
            const run = yield* launch({ command: "echo bye" })
            return { result: yield* run.result, instance: run.instance }
          })
        )
        return { result, instance, instances: yield* listInstances() }
      }).pipe(Effect.provide(layer))
    )
    expect(result.state).toBe("succeeded")
    expect(terminations).toBe(3)
    expect(instances.filter((i) => i.id === instance.id).map((i) => i.state)).toEqual(["terminated"])
    expect(await processesOf(instance.name)).toEqual([])
  }, 30_000)
})

describe("durations given in code", () => {
  it("take the CLI's short form as well as Effect's: maxDuration 5m, minAge 0s", async () => {
    const { run, report } = await runEngine(
      Effect.gen(function* () {
        const handle = yield* Effect.scoped(Effect.map(launch({ command: "true", maxDuration: "5m" }), (r) => r.id))
        return { run: yield* getRun(handle), report: yield* scanOrphans({ minAge: "0s" }) }
      })
    )
    expect(run.maxDurationMs).toBe(300_000)
    // Nothing of this home's is left (other homes' sandboxes on the machine may show as foreign).
    const controlId = readFileSync(join(home, "control-id"), "utf8").trim()
    expect(report.orphans.filter((o) => o.controlId === controlId)).toEqual([])
  })
})

describe("scoped termination", () => {
  /** An interpreter that prints why it cannot start on stderr, then exits or (`hang`) stays. */
  const brokenInterpreter = (mode: "exit" | "hang"): string => {
    const path = join(home, `broken-python-${mode}`)
    writeFileSync(
      path,
      "#!/bin/sh\necho 'starting the interpreter'\n" +
        "echo 'error while loading shared libraries: libpython3.so: cannot open shared object file' >&2\n" +
        (mode === "exit" ? "exit 127\n" : "exec sleep 60\n"),
      { mode: 0o755 }
    )
    return path
  }
  const launchFailure = async (python: string, bootTimeout: Duration.Duration) => {
    const layer = SkyRepl.layer({
      providers: [LocalProvider.layer({ home, python })],
      store: SqliteStore.layer({ filename: join(home, "state.db") }),
      config: testSettings(home, { bootTimeout })
    })
    const started = Date.now()
    const exit = await Effect.runPromise(Effect.exit(Effect.scoped(launch({ command: "true" }))).pipe(Effect.provide(layer)))
    return { ms: Date.now() - started, error: Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : null }
  }

  it("an instance that ends before its agent registers fails the launch at once, not at the boot timeout, saying why", async () => {
    // The sandbox ends before any agent can register; its console says why.
    const { ms, error } = await launchFailure(brokenInterpreter("exit"), Duration.minutes(5))
    expect(ms).toBeLessThan(15_000)
    expect(error).toMatchObject({
      _tag: "AgentError",
      reason: "lost",
      message: expect.stringMatching(
        /ended before its agent registered; its console's last lines: "starting the interpreter", "error while loading shared libraries: libpython3\.so: cannot open shared object file"$/
      )
    })
    const [instance] = await runEngine(listInstances())
    expect(instance?.state).toBe("terminated")
  })

  it("a process sandbox whose agent ends before registering, leaving a process behind, fails the launch at once too", async () => {
    // The "interpreter" (the sandbox's root) leaves a child of its own and exits: what is left
    // carries the sandbox's marker but has no agent, and no agent will register.
    const python = join(home, "leaky-python")
    const leftPids = join(home, "left-pids")
    writeFileSync(python, `#!/bin/sh\nsleep 600 &\necho $! >> ${leftPids}\nexit 1\n`, { mode: 0o755 })
    const layer = SkyRepl.layer({
      providers: [LocalProvider.layer({ home, python })],
      store: SqliteStore.layer({ filename: join(home, "state.db") }),
      config: testSettings(home, { bootTimeout: Duration.minutes(5) })
    })
    const started = Date.now()
    const exit = await Effect.runPromise(Effect.exit(Effect.scoped(launch({ command: "true", spec: "process" }))).pipe(Effect.provide(layer)))
    expect(Date.now() - started).toBeLessThan(15_000)
    expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : null).toMatchObject({ _tag: "AgentError", reason: "lost" })
    const [instance] = await runEngine(listInstances())
    expect(instance?.state).toBe("terminated")
    expect(await processesOf(instance!.name)).toEqual([])
    // What the "interpreter" left, also where it was started as the provider's fork server
    // (which carries no sandbox's marker), is gone too.
    const left = readFileSync(leftPids, "utf8").trim().split("\n").map(Number)
    expect(left.length).toBeGreaterThan(0)
    await eventually("the interpreter's children to end", () => left.every((pid) => !existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.startsWith("Z") === true))
  }, 30_000)

  it("an agent that never registers fails the launch at the boot timeout with the console's last lines", async () => {
    const { error } = await launchFailure(brokenInterpreter("hang"), Duration.seconds(2))
    expect(error).toMatchObject({
      _tag: "AgentError",
      reason: "boot-timeout",
      message: expect.stringContaining("did not register within 2s; its console's last lines: \"starting the interpreter\", \"error while loading")
    })
    const [instance] = await runEngine(listInstances())
    expect(instance?.state).toBe("terminated")
    expect(await processesOf(instance!.name)).toEqual([])
  })

  it("an interpreter that exits silently fails the launch with no console lines to show", async () => {
    const { error } = await launchFailure("/bin/false", Duration.minutes(5))
    expect(error).toMatchObject({ _tag: "AgentError", reason: "lost" })
    expect((error as { message: string }).message).not.toContain("console")
  })

  it("an onProgress callback that throws stops neither the launch nor its termination", async () => {
    const names: Array<string> = []
    await runEngine(
      Effect.gen(function* () {
        const result = yield* Effect.scoped(
          Effect.gen(function* () {
            const run = yield* launch({
              command: "echo hi",
              onProgress: () => {
                throw new Error("callback bug")
              }
            })
            names.push(run.instance.name)
            return yield* run.result
          })
        )
        expect(result.state).toBe("succeeded")
        expect((yield* listInstances()).find((i) => i.name === names[0])?.state).toBe("terminated")
      })
    )
    expect(await processesOf(names[0]!)).toEqual([])
  })

  it("an interruption that arrives while the scope's release waits for the agent still ends with the instance terminated", async () => {
    const names: Array<string> = []
    await runEngine(
      Effect.gen(function* () {
        const releasing = yield* Deferred.make<string>()
        const fiber = yield* Effect.fork(
          Effect.scoped(
            Effect.gen(function* () {
              const run = yield* launch({ command: "echo up; exec sleep 600" })
              yield* Stream.runHead(run.output)
              // A stopped agent does not answer the release's cancel: the release waits for it.
              for (const pid of yield* Effect.promise(() => processesOf(run.instance.name))) process.kill(pid, "SIGSTOP")
              yield* Deferred.succeed(releasing, run.instance.name)
            })
          )
        )
        names.push(yield* Deferred.await(releasing))
        yield* Effect.sleep("300 millis")
        yield* Fiber.interrupt(fiber)
        const record = (yield* listInstances()).find((i) => i.name === names[0])
        expect(record?.state).toBe("terminated")
      })
    )
    expect(await processesOf(names[0]!)).toEqual([])
  })

  it("interrupting the program leaves no process of the instance behind", async () => {
    const names: Array<string> = []
    await runEngine(
      Effect.gen(function* () {
        const started = yield* Deferred.make<string>()
        const fiber = yield* Effect.fork(
          Effect.scoped(
            Effect.gen(function* () {
              const run = yield* launch({ command: "sleep 600" })
              yield* Deferred.succeed(started, run.instance.name)
              return yield* run.result
            })
          )
        )
        const name = yield* Deferred.await(started)
        names.push(name)
        expect((yield* Effect.promise(() => processesOf(name))).length).toBeGreaterThan(0)
        yield* Fiber.interrupt(fiber)
        const record = (yield* listInstances()).find((i) => i.name === name)
        expect(record?.state).toBe("terminated")
        const run = (yield* listRuns())[0]
        expect(run?.state).toBe("cancelled")
        // Also when the agent's report of the cancel lands before the release records it.
        expect(run?.error).toBe("the scope that launched the run closed before it ended")
      })
    )
    expect(await processesOf(names[0]!)).toEqual([])
  })

  it("the Promise client's await using terminates the instance", async () => {
    const client = await SkyRepl.make({
      providers: [LocalProvider.layer({ home })],
      store: SqliteStore.layer({ filename: join(home, "state.db") }),
      config: testSettings(home)
    })
    let name = ""
    {
      await using run = await client.launch({ command: "sleep 600" })
      name = run.instance.name
      await eventually("the sandbox runs", async () => (await processesOf(name)).length > 0)
    }
    expect(await processesOf(name)).toEqual([])
    const instances = await client.listInstances()
    expect(instances.find((i) => i.name === name)?.state).toBe("terminated")
    await client.dispose()
  })

  it("disposing the Promise client ends every instance it launched", async () => {
    const client = await SkyRepl.make({
      providers: [LocalProvider.layer({ home })],
      store: SqliteStore.layer({ filename: join(home, "state.db") }),
      config: testSettings(home)
    })
    const a = await client.launch({ command: "sleep 600" })
    const b = await client.launch({ command: "sleep 600" })
    await client.dispose()
    expect(await processesOf(a.instance.name)).toEqual([])
    expect(await processesOf(b.instance.name)).toEqual([])
  })

  it.each([0, 15, 40])("disposing the Promise client %i ms into a launch ends that launch's instance too", async (delayMs) => {
    const client = await SkyRepl.make({
      providers: [LocalProvider.layer({ home })],
      store: SqliteStore.layer({ filename: join(home, "state.db") }),
      config: testSettings(home)
    })
    const launched = client.launch({ command: "exec sleep 600" }).then(
      (run) => run.instance.name,
      (error: unknown) => error
    )
    await new Promise((resolve) => setTimeout(resolve, delayMs))
    await client.dispose()
    const outcome = await launched
    // Whether the launch got as far as returning or not, nothing of it may run on: no process
    // of any instance named for this home's control id, a moment later.
    await new Promise((resolve) => setTimeout(resolve, 500))
    const controlId = readFileSync(join(home, "control-id"), "utf8").trim()
    const left = await Effect.runPromise(LocalApi.scanProcesses)
    expect(left.filter((p) => p.instance?.includes(controlId) === true && p.state !== "Z").map((p) => p.instance)).toEqual([])
    const instances = await runEngine(listInstances())
    for (const instance of instances) {
      expect([instance.name, await processesOf(instance.name)]).toEqual([instance.name, []])
      expect([instance.name, instance.state]).toEqual([instance.name, "terminated"])
    }
    expect(outcome).toBeDefined()
    await expect(client.getRun("x")).rejects.toMatchObject({ _tag: "ClientDisposed" })
    await expect(client.launch({ command: "true" })).rejects.toMatchObject({ _tag: "ClientDisposed" })
  })

  it.each(["the run's first", "the client's first", "the client's, then the run's a tick later"] as const)(
    "a run's dispose and its client's dispose at once (%s): each resolves with the instance gone and its records final",
    async (order) => {
      const client = await SkyRepl.make({ providers: [LocalProvider.layer({ home })], store: SqliteStore.layer({ filename: join(home, "state.db") }), config: testSettings(home) })
      const run = await client.launch({ command: "exec sleep 600" })
      const name = run.instance.name
      await eventually("the sandbox runs", async () => (await processesOf(name)).length > 0)
      let clientDisposed: Promise<void>
      let runDisposed: Promise<void>
      if (order === "the run's first") {
        runDisposed = run.dispose()
        clientDisposed = client.dispose()
      } else {
        clientDisposed = client.dispose()
        if (order !== "the client's first") await new Promise((resolve) => setImmediate(resolve))
        runDisposed = run.dispose()
      }
      await runDisposed
      // The run's dispose resolved at once, its instance still running, when the client's was
      // already ending it.
      expect(await processesOf(name)).toEqual([])
      await clientDisposed
      // Read from the store alone: an engine would reap what this left and hide it. The client
      // closed its store under the run's own termination ("Cannot use a closed database"),
      // which left the run running and the instance allocated for the next process to settle.
      const records = await Effect.runPromise(
        Effect.gen(function* () {
          const store = yield* Store
          return { run: Option.map(yield* store.getRun(run.id), (r) => r.state), instance: Option.map(yield* store.getInstanceByName(name), (i) => i.state) }
        }).pipe(Effect.scoped, Effect.provide(SqliteStore.layer({ filename: join(home, "state.db") })))
      )
      expect(records).toEqual({ run: Option.some("cancelled"), instance: Option.some("terminated") })
    }
  )

  it("many live Promise clients in one process share one exit listener (Node warned of a leak at the eleventh)", async () => {
    const before = process.listenerCount("exit")
    const warnings: Array<string> = []
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`)
    process.on("warning", onWarning)
    const clients: Array<SkyReplClient> = []
    try {
      for (let i = 0; i < 12; i++) {
        clients.push(await SkyRepl.make({ providers: [LocalProvider.layer({ home })], store: SqliteStore.layer({ filename: join(home, "state.db") }), config: testSettings(home) }))
      }
      expect(process.listenerCount("exit") - before).toBeLessThanOrEqual(1)
      // The one listener still ends the instance of every client's undisposed run (see the
      // exit tests): here, that it is there while any client is, and gone with the last.
      await Promise.all(clients.slice(1).map((client) => client.dispose()))
      expect(process.listenerCount("exit") - before).toBe(1)
    } finally {
      await Promise.all(clients.map((client) => client.dispose()))
      await new Promise((resolve) => setImmediate(resolve))
      process.off("warning", onWarning)
    }
    expect(process.listenerCount("exit")).toBe(before)
    expect(warnings.filter((w) => w.includes("MaxListeners"))).toEqual([])
  })

  it.each(["at once", "after a tick", "15 ms in"] as const)("a launch that disposing the Promise client stops (%s) rejects with ClientDisposed", async (when) => {
    const client = await SkyRepl.make({
      providers: [LocalProvider.layer({ home })],
      store: SqliteStore.layer({ filename: join(home, "state.db") }),
      config: testSettings(home)
    })
    const launched = client.launch({ command: "exec sleep 600" })
    if (when === "after a tick") await new Promise((resolve) => setImmediate(resolve))
    if (when === "15 ms in") await new Promise((resolve) => setTimeout(resolve, 15))
    const disposed = client.dispose()
    // It was Effect's InterruptedException, or a FiberFailure "ManagedRuntime disposed" when the
    // dispose came at once: neither a documented error, nor one with a word about the dispose.
    await expect(launched).rejects.toMatchObject({ _tag: "ClientDisposed", message: expect.stringContaining("while the launch was under way") })
    await disposed
    const instances = await runEngine(listInstances())
    for (const instance of instances) {
      expect([instance.name, instance.state]).toEqual([instance.name, "terminated"])
      // A moment to die, as in the test above: killed processes can still be listed briefly.
      await eventually(`${instance.name} gone`, async () => (await processesOf(instance.name)).length === 0, 5_000)
    }
  })

  it.each(["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"] as const)("a Promise-client script killed by %s ends its instances, then dies of the signal", async (signal) => {
    const child = execa(bunBin, [join(import.meta.dirname, "fixtures", "client-script.ts"), home, "wait"], { reject: false, buffer: false })
    const line = await new Promise<string>((resolve, reject) => {
      child.stdout?.once("data", (data: Buffer) => resolve(data.toString("utf8")))
      child.once("exit", () => reject(new Error("the script ended before launching")))
    })
    const { name } = JSON.parse(line) as { name: string }
    expect((await processesOf(name)).length).toBeGreaterThan(0)
    child.kill(signal)
    const result = await child
    expect(result.signal).toBe(signal)
    expect(await processesOf(name)).toEqual([])
    const state = await runEngine(Effect.map(listInstances(), (all) => all.find((i) => i.name === name)?.state))
    expect(state).toBe("terminated")
  })

  it("a script with a SIGTERM listener of its own decides what SIGTERM does: the client leaves it alone", async () => {
    const child = execa(bunBin, [join(import.meta.dirname, "fixtures", "client-script.ts"), home, "wait-handled"], { reject: false, buffer: false })
    const { name } = JSON.parse(
      await new Promise<string>((resolve) => child.stdout?.once("data", (data: Buffer) => resolve(data.toString("utf8"))))
    ) as { name: string }
    child.kill("SIGTERM")
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    expect(child.exitCode).toBeNull()
    expect((await processesOf(name)).length).toBeGreaterThan(0)
    child.kill("SIGKILL")
    await child
    // Its owner killed outright, the instance is the next engine's to reap (layer 2).
    await runEngine(Effect.void)
    await eventually(`${name} gone`, async () => (await processesOf(name)).length === 0)
  })

  it("a Promise-client process that exits abruptly ends its instances on the way out", async () => {
    const child = await execa(bunBin, [join(import.meta.dirname, "fixtures", "client-script.ts"), home, "exit"], { reject: false })
    expect(child.exitCode).toBe(0)
    const { name } = JSON.parse(child.stdout) as { name: string }
    expect(await processesOf(name)).toEqual([])
    // The next process finds the owner dead and records the termination.
    const state = await runEngine(Effect.map(listInstances(), (all) => all.find((i) => i.name === name)?.state))
    expect(state).toBe("terminated")
  })

  it("a Promise-client process that exits while a launch is under way ends that launch's instance on the way out", async () => {
    const child = await execa(bunBin, [join(import.meta.dirname, "fixtures", "client-script.ts"), home, "exit-booting"], { reject: false })
    expect(child.exitCode).toBe(0)
    const { name } = JSON.parse(child.stdout) as { name: string }
    // Killed on the way out, not waited for: a moment to die (seconds on a loaded machine), well
    // within the script's dead-man window (60 s), which would end it without the exit hook.
    await eventually(`${name} gone`, async () => (await processesOf(name)).length === 0, 15_000)
    const state = await runEngine(Effect.map(listInstances(), (all) => all.find((i) => i.name === name)?.state))
    expect(state).toBe("terminated")
  })

  it("settings that cannot run an engine are a ConfigError before the store is opened", async () => {
    const cases: ReadonlyArray<[Partial<SkyReplSettings>, string, string]> = [
      [{ leaseTtl: Duration.zero }, "leaseTtl", "must be longer than 0"],
      [{ heartbeatInterval: Duration.seconds(5), deadmanTimeout: Duration.seconds(6) }, "deadmanTimeout", "at least twice the heartbeat interval (5s)"],
      // Node's listen threw this at the first launch, a defect rather than an error.
      [{ hubPort: 70_000 }, "hubPort", "70000 is not a port"],
      [{ leaseTtl: Duration.infinity }, "leaseTtl", "must be finite"],
      // Said of the interval itself, not as a dead-man window shorter than twice "Infinityms".
      [{ heartbeatInterval: Duration.infinity }, "heartbeatInterval", "must be finite"],
      [{ bootTimeout: Duration.infinity }, "bootTimeout", "must be finite"],
      // Finite, and as good as for ever: a lease no other machine's reaper would ever see lapse.
      [{ leaseTtl: Duration.days(1e15) }, "leaseTtl", "is too long to count in milliseconds"],
      // The agent is told it in milliseconds: a heartbeat with no pause.
      [{ heartbeatInterval: Duration.nanos(10n) }, "heartbeatInterval", "must be at least 1ms, not 10ns"]
    ]
    for (const [overrides, setting, message] of cases) {
      const made = SkyRepl.make({
        providers: [LocalProvider.layer({ home })],
        store: SqliteStore.layer({ filename: join(home, "state.db") }),
        config: { ...testSettings(home), ...overrides }
      })
      await expect(made).rejects.toMatchObject({ _op: "InvalidData", path: [setting], message: expect.stringContaining(message) })
      // An Error whose message names the setting (a plain ConfigError printed as "[object Object]").
      await expect(made).rejects.toBeInstanceOf(Error)
      await expect(made).rejects.toMatchObject({ message: expect.stringMatching(new RegExp(`^${setting}: `)) })
      expect(existsSync(join(home, "state.db"))).toBe(false)
    }
  })

  it("the Promise client rejects with the tagged error", async () => {
    const client = await SkyRepl.make({
      providers: [LocalProvider.layer({ home })],
      store: SqliteStore.layer({ filename: join(home, "state.db") }),
      config: testSettings(home)
    })
    await expect(client.launch({ command: "true", spec: "nope" })).rejects.toMatchObject({ _tag: "InvalidSpec" })
    await expect(client.launch({ command: "true", ...smuggled<object>({ maxduration: "1s" }) })).rejects.toMatchObject({ _tag: "InvalidLaunchOptions" })
    // Wrapped by the client, it was called at each phase, each throw logged, the launch going on.
    await expect(client.launch({ command: "true", onProgress: smuggled<() => void>("log") })).rejects.toMatchObject({
      _tag: "InvalidLaunchOptions",
      message: 'onProgress must be a function, not "log"'
    })
    expect(await client.listRuns()).toEqual([])
    await client.dispose()
  })
})

describe("what a run leaves behind", () => {
  it("a process sandbox's daemon that cleared its environment and left its session is ended with the instance", async () => {
    // A unique duration names the daemon: it carries no marker once `env -i` has run.
    const daemon = `sleep 987.${process.pid}${Date.now() % 100000}`
    try {
      const result = await runEngine(
        Effect.scoped(
          Effect.gen(function* () {
            const run = yield* launch({ command: `env -i setsid ${daemon} </dev/null >/dev/null 2>&1 & sleep 0.3; echo started`, spec: "process" })
            return yield* run.result
          })
        )
      )
      expect(result.state).toBe("succeeded")
      await eventually("the daemon ended with its instance", () => processesRunning(daemon).length === 0, 5_000)
    } finally {
      for (const pid of processesRunning(daemon)) process.kill(pid, "SIGKILL")
    }
  })
})

describe("an instance that loses its agent", () => {
  /**
   * Launches a long run in a process sandbox, whose root is its agent (the run's shell is its
   * child), sends the agent `signal` once the run is going, and waits for the run's end (20 s at
   * most). What is left after a SIGKILL is the run's processes, reparented, with nothing to end
   * them; after a SIGSTOP, an agent still there, and still running as far as /proc (and so the
   * provider) can tell, that answers nothing any more.
   */
  const signalAgent = (signal: "SIGKILL" | "SIGSTOP", overrides: Partial<SkyReplSettings> = {}) =>
    runEngine(
      Effect.scoped(
        Effect.gen(function* () {
          const engine = yield* SkyRepl
          const run = yield* launch({ command: "echo up; sleep 600", spec: "process" })
          yield* Stream.runHead(run.output)
          const agent = Option.flatMap(yield* engine.store.getInstanceByName(run.instance.name), (i) => Option.fromNullable(i.providerRef))
          if (Option.isNone(agent)) return yield* Effect.die("no provider ref recorded")
          const signalledAt = Date.now()
          process.kill(Number(agent.value), signal)
          const result = yield* run.result.pipe(
            Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error(`the run went on after its agent's ${signal}`) })
          )
          return { name: run.instance.name, result, tookMs: Date.now() - signalledAt }
        })
      ),
      overrides
    )

  it("a process sandbox whose agent is killed ends the run failed and the instance terminated, instead of waiting on the command", async () => {
    const { name, result } = await signalAgent("SIGKILL")
    expect(result.state).toBe("failed")
    expect(result.error).toContain("the instance stopped unexpectedly")
    expect(await processesOf(name)).toEqual([])
  })

  it("a stopped agent (its provider still reports the instance running) fails the run once its dead-man window has passed, and the instance is terminated", async () => {
    const deadman = Duration.seconds(2)
    const { name, result, tookMs } = await signalAgent("SIGSTOP", { deadmanTimeout: deadman })
    expect(result.state).toBe("failed")
    expect(result.error).toBe("the agent has been silent for longer than its dead-man window (2s): the run is taken as ended")
    // Not before the window (and a heartbeat) has passed: a live agent's own switch would not have fired yet.
    expect(tookMs).toBeGreaterThanOrEqual(Duration.toMillis(deadman))
    expect(await processesOf(name)).toEqual([])
  })
})

describe("attach", () => {
  it("replays from byte offsets with no gap and no duplicate", async () => {
    const { full, resumed, again } = await runEngine(
      Effect.gen(function* () {
        const runId = yield* Effect.scoped(
          Effect.gen(function* () {
            const run = yield* launch({ command: "printf abcdef; printf 123456 >&2" })
            yield* run.result
            return run.id
          })
        )
        const full = yield* collect(attach(runId, { follow: false }))
        const resumed = yield* collect(attach(runId, { from: { stdout: 3, stderr: 5 } }))
        const again = yield* collect(attach(runId, { from: { stdout: 6, stderr: 6 } }))
        return { full, resumed, again }
      })
    )
    expect(text(full)).toBe("abcdef")
    expect(text(full, "stderr")).toBe("123456")
    expect(text(resumed)).toBe("def")
    expect(text(resumed, "stderr")).toBe("6")
    expect(resumed.find((c) => c.stream === "stdout")?.offset).toBe(3)
    expect(again).toEqual([])
  })

  it("follows live output while the run goes on", async () => {
    const seen = await runEngine(
      Effect.scoped(
        Effect.gen(function* () {
          const run = yield* launch({ command: "for i in 1 2 3; do echo $i; sleep 0.3; done" })
          const chunks = yield* collect(attach(run.id))
          return { out: text(chunks), count: chunks.length }
        })
      )
    )
    expect(seen.out).toBe("1\n2\n3\n")
    // Live: the lines arrived as they were written, not in one piece at the end.
    expect(seen.count).toBeGreaterThanOrEqual(3)
  })

  it("text output is stored compressed (by the controller for a local agent on Bun); every reader gets the bytes as written", async () => {
    // 6 MiB of log lines: several uploads, each large enough to be worth compressing.
    const command = "i=0; while [ $i -lt 40 ]; do seq 100000 $((100000 + 20000)); i=$((i + 1)); done"
    const expected = (await execa("/bin/sh", ["-c", command], { stripFinalNewline: false })).stdout
    const { live, replayed, runId } = await runEngine(
      Effect.gen(function* () {
        const { live, runId } = yield* Effect.scoped(
          Effect.gen(function* () {
            const run = yield* launch({ command })
            const live = text(yield* collect(run.output))
            yield* run.result
            return { live, runId: run.id }
          })
        )
        return { live, replayed: text(yield* collect(attach(runId, { follow: false }))), runId }
      })
    )
    expect(live.length).toBe(expected.length)
    expect(live === expected).toBe(true)
    expect(replayed === expected).toBe(true)
    const rows = await Effect.runPromise(
      Effect.scoped(
        Effect.flatMap(makeClient(join(home, "state.db")), (sql) =>
          sql.unsafe<{ encoding: string; offset: number; size: number; stored: number; head: string; data: Uint8Array }>(
            'SELECT encoding, "offset", size, length(data) AS stored, hex(substr(data, 1, 2)) AS head, data FROM output WHERE run_id = ?',
            [runId]
          )
        )
      )
    )
    const deflated = rows.filter((r) => r.encoding === "deflate")
    expect(deflated.length).toBeGreaterThan(0)
    expect(deflated.every((r) => r.head === "1F8B")).toBe(true)
    // The local agent is on this machine. Under Bun, whose zlib is the faster, it sent its output
    // as written, and what is stored is this runtime's own gzip of those bytes (the agent's
    // Python zlib makes other bytes); under Node the agent compressed it.
    const bytes = Buffer.from(expected)
    for (const row of typeof Reflect.get(globalThis, "Bun") === "object" ? deflated : []) {
      const own = gzipSync(bytes.subarray(row.offset, row.offset + row.size), { level: 1 })
      expect(Buffer.from(row.data).equals(own)).toBe(true)
    }
    expect(rows.reduce((n, r) => n + r.size, 0)).toBe(expected.length)
    // DEFLATE level 1 keeps these lines in about a third of their size with zlib's own
    // algorithm (Node), and in about half with the faster one Bun's zlib uses at that level.
    expect(rows.reduce((n, r) => n + r.stored, 0) * 3).toBeLessThan(expected.length * 2)
  })

  it("a reader following a run hosted here reads the store once per chunk it is woken for, not twice", async () => {
    // Eight lines, written apart: eight uploads, each signalled. Reading again at once after a
    // short page finds nothing: a read that would cost B3's 200 launches and B4's 512 MiB one
    // empty SELECT per chunk.
    let reads = 0
    const counting = Layer.effect(
      Store,
      Effect.map(Store, (store) => ({
        ...store,
        readOutput: (runId: string, afterSeq: number, limit: number) => Effect.zipRight(Effect.sync(() => reads++), store.readOutput(runId, afterSeq, limit))
      }))
    ).pipe(Layer.provide(SqliteStore.layer({ filename: join(home, "state.db") })))
    const layer = SkyRepl.layer({ providers: [LocalProvider.layer({ home })], store: counting, config: testSettings(home) })
    const chunks = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const run = yield* launch({ command: "for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.1; done" })
          return yield* collect(run.output)
        })
      ).pipe(Effect.provide(layer))
    )
    expect(text(chunks)).toBe("1\n2\n3\n4\n5\n6\n7\n8\n")
    expect(chunks.length).toBeGreaterThanOrEqual(4)
    // One read per wake-up, one that finds the end, and one for a poll of the hosted interval.
    expect(reads).toBeLessThanOrEqual(chunks.length + 3)
  })

  it("fails with RunNotFound for an unknown run", async () => {
    const exit = await runEngine(Effect.exit(collect(attach("nosuchrun0000"))))
    expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag).toBe("RunNotFound")
  })
})

describe("the Promise client's output readers", () => {
  /** A Promise client whose store counts the reads an output reader makes. */
  const countingClient = async () => {
    const reads = { output: 0, run: 0 }
    const store = Layer.effect(
      Store,
      Effect.map(Store, (inner) => ({
        ...inner,
        getRun: (id: string) => Effect.zipRight(Effect.sync(() => reads.run++), inner.getRun(id)),
        readOutput: (runId: string, afterSeq: number, limit: number) => Effect.zipRight(Effect.sync(() => reads.output++), inner.readOutput(runId, afterSeq, limit))
      }))
    ).pipe(Layer.provide(SqliteStore.layer({ filename: join(home, "state.db") })))
    const client = await SkyRepl.make({ providers: [LocalProvider.layer({ home })], store, config: testSettings(home) })
    return { client, reads }
  }
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

  it("a reader left without return() reads the store no more once it has what it asked for", async () => {
    const { client, reads } = await countingClient()
    try {
      const run = await client.launch({ command: "echo a; exec sleep 600" })
      // Iterated by hand and dropped, as a loop body that threw into a catch outside it leaves
      // an iterator that nothing calls again.
      const own = run.output[Symbol.asyncIterator]()
      const attached = client.attach(run.id)[Symbol.asyncIterator]()
      expect(text([(await own.next()).value, (await attached.next()).value].filter((c) => c !== undefined))).toBe("a\na\n")
      await pause(200)
      const before = { ...reads }
      // Both went on reading ahead, the store once a second each, until the run ended.
      await pause(2_500)
      expect(reads).toEqual(before)
    } finally {
      await client.dispose()
    }
  })

  it.each(["as it waits for output", "begun in the tick the dispose is"] as const)(
    "a for-await loop over run.output that the client's dispose interrupts (%s) ends with the run's output, not an error",
    async (when) => {
      const client = await SkyRepl.make({ providers: [LocalProvider.layer({ home })], store: SqliteStore.layer({ filename: join(home, "state.db") }), config: testSettings(home) })
      const run = await client.launch({ command: "echo a; exec sleep 600" })
      await eventually("the sandbox runs", async () => (await processesOf(run.instance.name)).length > 0)
      const read = async () => {
        const chunks = []
        for await (const chunk of run.output) chunks.push(chunk)
        return text(chunks)
      }
      let loop: Promise<string>
      if (when === "as it waits for output") {
        loop = read()
        await pause(1_500)
      } else loop = read()
      await client.dispose()
      // It was ClientDisposed when the loop began in the dispose's tick: the same loop's fate
      // hung on when its first read was scheduled.
      expect(await loop).toBe("a\n")
      expect(await processesOf(run.instance.name)).toEqual([])
    }
  )

  it("client.attach following another process's run, cut off by the client's dispose, rejects with ClientDisposed", async () => {
    const owner = startOwner(home, "echo a; exec sleep 600")
    try {
      const { runId } = await owner.launched
      const { client, reads } = await countingClient()
      const seen: Array<string> = []
      const loop = (async () => {
        for await (const chunk of client.attach(runId)) seen.push(Buffer.from(chunk.data).toString("utf8"))
      })()
      const dropped = client.attach(runId)[Symbol.asyncIterator]()
      await dropped.next()
      await eventually("the first chunk", () => seen.length > 0)
      await client.dispose()
      // It was a StoreError ("The database connection is not open" on Node, "Cannot use a
      // closed database" on Bun): the store closed under a read that went on polling.
      await expect(loop).rejects.toMatchObject({ _tag: "ClientDisposed", message: expect.stringContaining("before the run's output ended") })
      await expect(dropped.next()).rejects.toMatchObject({ _tag: "ClientDisposed" })
      expect(seen).toEqual(["a\n"])
      const after = { ...reads }
      await pause(300)
      expect(reads).toEqual(after)
    } finally {
      owner.child.kill("SIGTERM")
      await owner.exited
    }
  })
})

describe("cancel and time limits", () => {
  it("cancel ends a running command and is idempotent", async () => {
    const { first, second, result, name } = await runEngine(
      Effect.scoped(
        Effect.gen(function* () {
          const run = yield* launch({ command: "sleep 600" })
          const first = yield* cancel(run.id)
          const result = yield* run.result
          const second = yield* cancel(run.id)
          return { first, second, result, name: run.instance.name }
        })
      )
    )
    expect(first).toMatchObject({ outcome: "cancelled", state: "cancelled" })
    expect(second).toMatchObject({ outcome: "already-finished", state: "cancelled" })
    expect(result.state).toBe("cancelled")
    await eventually("the sandbox is gone", async () => (await processesOf(name)).length === 0)
  })

  it("maxDuration ends the run as timed_out and terminates the instance", async () => {
    const { result, name, state } = await runEngine(
      Effect.gen(function* () {
        const { result, name, id } = yield* Effect.scoped(
          Effect.gen(function* () {
            const run = yield* launch({ command: "echo started; sleep 600", maxDuration: "1 second" })
            return { result: yield* run.result, name: run.instance.name, id: run.id }
          })
        )
        return { result, name, state: (yield* getRun(id)).state }
      })
    )
    expect(result.state).toBe("timed_out")
    expect(state).toBe("timed_out")
    expect(await processesOf(name)).toEqual([])
  })

  it("terminates the instance as soon as the run ends, before the scope closes", async () => {
    await runEngine(
      Effect.scoped(
        Effect.gen(function* () {
          const run = yield* launch({ command: "true" })
          yield* run.result
          yield* Effect.promise(() => eventually("instance gone while the scope is open", async () => (await processesOf(run.instance.name)).length === 0))
        })
      )
    )
  })
})

describe("other processes", () => {
  /** The owner still holds its run: the sandbox runs, and a cancel from here is answered by the owner. */
  const expectOwnerAnswers = async (owner: Owner, runId: string, name: string) => {
    expect((await processesOf(name)).length).toBeGreaterThan(0)
    expect(await runEngine(cancel(runId))).toMatchObject({ outcome: "cancelled-by-owner" })
    expect(await owner.exited).toBe(0)
  }

  /**
   * A local provider whose spawn first holds this whole process still for longer than its lease
   * (as a SIGSTOP would) while another process opens the store and reaps the launch it finds
   * abandoned, then spawns: the sandbox appears after the reaper recorded the instance ended.
   */
  const stoppedBeforeSpawn = Layer.effect(
    Provider,
    Effect.map(LocalProvider.make({ home }), (local) => ({
      ...local,
      spawn: (...args: Parameters<typeof local.spawn>) =>
        Effect.suspend(() => {
          spawnSync("sleep", ["3.5"])
          const reaper = spawnSync(bunBin, [join(import.meta.dirname, "fixtures", "reaper.ts"), home], { encoding: "utf8" })
          if (reaper.status !== 0) return Effect.die(new Error(`reaper failed: ${reaper.stderr}`))
          return local.spawn(...args)
        })
    }))
  )

  it("a sandbox spawned after another process reaped its launch (the controller was stopped past its lease) is still ended by its launch", async () => {
    const names: Array<string> = []
    // A dead-man window longer than the test: only the launch itself can end the sandbox.
    const layer = SkyRepl.layer({
      providers: [stoppedBeforeSpawn],
      store: SqliteStore.layer({ filename: join(home, "state.db") }),
      config: testSettings(home, { deadmanTimeout: Duration.seconds(60) })
    })
    await Effect.runPromise(
      Effect.scoped(
        Effect.flatMap(launch({ command: "sleep 600", onProgress: (e) => void names.push(e.instance) }), (run) => run.result)
      ).pipe(Effect.provide(layer), Effect.ignore)
    )
    const name = names[0]
    if (name === undefined) throw new Error("no launch progress")
    try {
      await eventually(`${name} gone`, async () => (await processesOf(name)).length === 0, 5_000)
      // The reaper's record, which said so before the sandbox even existed.
      expect(await runEngine(Effect.map(listInstances(), (all) => all.find((i) => i.name === name)?.state))).toBe("terminated")
    } finally {
      await Effect.runPromise(LocalApi.terminateSandbox("local", name, "5 seconds").pipe(Effect.ignore))
    }
  }, 30_000)

  it("a launch held up past its lease while another process reaped it ends with the run as the reaper recorded it, not an illegal transition", async () => {
    const layer = SkyRepl.layer({
      providers: [stoppedBeforeSpawn],
      store: SqliteStore.layer({ filename: join(home, "state.db") }),
      config: testSettings(home, { deadmanTimeout: Duration.seconds(60) })
    })
    const outcome = await Effect.runPromise(
      Effect.scoped(Effect.flatMap(launch({ command: "sleep 600" }), (run) => run.result)).pipe(Effect.provide(layer), Effect.either)
    )
    // Before: the launch failed with "illegal instance transition terminated → booting".
    expect(outcome).toMatchObject({ _tag: "Right", right: { state: "failed", error: "the controller that owned this instance stopped renewing its lease" } })
  }, 30_000)

  it("a controller that opens the store reaps instances whose SIGKILLed owner stopped renewing", async () => {
    const owner = startOwner(home, "sleep 600", { SKYREPL_LEASE_TTL: "1s" })
    const { name } = await owner.launched
    owner.child.kill("SIGKILL")
    await owner.exited
    expect((await processesOf(name)).length).toBeGreaterThan(0)
    await new Promise((r) => setTimeout(r, 1_500))
    // Opening the engine is enough: reaping runs before anything else.
    const state = await runEngine(Effect.map(listInstances(), (all) => all.find((i) => i.name === name)?.state))
    expect(state).toBe("terminated")
    expect(await processesOf(name)).toEqual([])
  })

  const cmdlineOf = (pid: number): string => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8")
    } catch {
      return ""
    }
  }

  it("a SIGKILLed owner's forked sandbox is reaped the same way, and its fork server ends with the owner", async () => {
    const owner = startOwner(home, "sleep 600", { SKYREPL_LEASE_TTL: "5m", SKYREPL_FORK_SERVER: "always" })
    const { name } = await owner.launched
    const ownerPid = owner.child.pid ?? -1
    const processes = await Effect.runPromise(LocalApi.scanProcesses)
    const servers = processes.filter((p) => p.ppid === ownerPid && cmdlineOf(p.pid).includes("skyrepl_fork_server.py"))
    expect(servers.length).toBe(1)
    const root = LocalApi.findSandboxes(processes, "local").get(name)?.root
    expect(root === undefined ? "" : readFileSync(`/proc/${root.pid}/comm`, "utf8").trim()).toBe("skyrepl-sandbox")
    owner.child.kill("SIGKILL")
    await owner.exited
    await eventually("the fork server to end with its owner", () => !cmdlineOf(servers[0]?.pid ?? -1).includes("skyrepl_fork_server.py"))
    expect((await processesOf(name)).length).toBeGreaterThan(0)
    const state = await runEngine(Effect.map(listInstances(), (all) => all.find((i) => i.name === name)?.state))
    expect(state).toBe("terminated")
    expect(await processesOf(name)).toEqual([])
  })

  it("a live owner keeps its leases ahead of the clock: controllers opening the store TTLs later leave its run alone", async () => {
    const owner = startOwner(home, "sleep 600", { SKYREPL_LEASE_TTL: "2s" })
    const { runId, name } = await owner.launched
    try {
      // Well past the first TTL: a renewal that rewrote the expiry of its first tick would let
      // these controllers take the run for an orphan.
      await new Promise((r) => setTimeout(r, 5_000))
      for (let i = 0; i < 3; i++) {
        const state = await runEngine(Effect.map(listInstances(), (all) => all.find((instance) => instance.name === name)?.state), { leaseTtl: Duration.seconds(2) })
        expect(state).toBe("allocated")
        await new Promise((r) => setTimeout(r, 500))
      }
      await expectOwnerAnswers(owner, runId, name)
    } finally {
      owner.child.kill("SIGKILL")
    }
  }, 30_000)

  it("an owner on this machine whose process is gone is reaped at once, without waiting for its lease, and its row forgotten", async () => {
    const owner = startOwner(home, "sleep 600", { SKYREPL_LEASE_TTL: "5m" })
    const { name, runId } = await owner.launched
    const rowOf = (id: string) => Effect.flatMap(SkyRepl, (engine) => engine.store.getController(id))
    let ownerId = ""
    try {
      ownerId = (await runEngine(getRun(runId))).ownerControllerId ?? ""
      expect(Option.isSome(await runEngine(rowOf(ownerId)))).toBe(true)
    } finally {
      owner.child.kill("SIGKILL")
    }
    await owner.exited
    const state = await runEngine(Effect.map(listInstances(), (all) => all.find((i) => i.name === name)?.state))
    expect(state).toBe("terminated")
    expect(await processesOf(name)).toEqual([])
    // Its row, control secret and all, would otherwise stay for ever.
    expect(await runEngine(rowOf(ownerId))).toEqual(Option.none())
  })

  // A container sharing the state home and the host name (`docker run --network host` with
  // ~/.repl mounted) has its own pids: one that does not exist here is not a dead owner.
  it.skipIf(!pidNamespaces)("a live owner in another pid namespace of this machine is not taken for dead", async () => {
    // The owner's pid in its namespace is chosen to be one that no process has here.
    let pid = 30_000
    while (existsSync(`/proc/${pid}`)) pid++
    const script = `echo ${pid - 1} > /proc/sys/kernel/ns_last_pid && "$@"; exit $?`
    const owner = startOwner(home, "sleep 600", { SKYREPL_LEASE_TTL: "5m" }, ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", script, "sh"])
    try {
      const { runId, name } = await owner.launched
      const state = await runEngine(Effect.map(listInstances(), (all) => all.find((i) => i.name === name)?.state))
      expect(state).toBe("allocated")
      await expectOwnerAnswers(owner, runId, name)
    } finally {
      owner.child.kill("SIGKILL")
    }
  }, 30_000)

  it("cancel from another process asks the live owner, which ends the run", async () => {
    const owner = startOwner(home, "sleep 600")
    const { runId, name } = await owner.launched
    const result = await runEngine(cancel(runId))
    expect(result).toMatchObject({ outcome: "cancelled-by-owner", state: "cancelled" })
    expect(await owner.exited).toBe(0)
    expect(owner.output()).toContain('"state":"cancelled"')
    expect(await processesOf(name)).toEqual([])
  })

  it("cancel after the owner was killed finds the run already ended by the reaper", async () => {
    const owner = startOwner(home, "sleep 600")
    const { runId, name } = await owner.launched
    owner.child.kill("SIGKILL")
    await owner.exited
    const result = await runEngine(cancel(runId))
    expect(result).toMatchObject({ outcome: "already-finished", state: "failed" })
    expect(await processesOf(name)).toEqual([])
  })

  it("cancel terminates the instance directly when its owner holds the lease but does not answer", async () => {
    const owner = startOwner(home, "sleep 600", { SKYREPL_LEASE_TTL: "5m" })
    const { runId, name } = await owner.launched
    owner.child.kill("SIGSTOP")
    try {
      const result = await runEngine(cancel(runId))
      expect(result).toMatchObject({ outcome: "terminated-directly", state: "cancelled" })
      expect(await processesOf(name)).toEqual([])
    } finally {
      owner.child.kill("SIGKILL")
      await owner.exited
    }
  }, 30_000)
})

describe("state home", () => {
  it("keeps its database under the configured home", async () => {
    await runEngine(listRuns())
    expect(existsSync(join(home, "state.db"))).toBe(true)
  })
})

describe("start-up cost", () => {
  it("an engine that only reads starts no agent endpoint and records no controller; its first launch does both", async () => {
    const seen = await runEngine(
      Effect.gen(function* () {
        const engine = yield* SkyRepl
        yield* listRuns()
        const before = { registered: engine.registered(), row: yield* engine.store.getController(engine.controller.id) }
        const out = yield* Effect.scoped(Effect.flatMap(launch({ command: "echo up" }), (r) => collect(r.output)))
        const after = { registered: engine.registered(), row: yield* engine.store.getController(engine.controller.id) }
        return { before, after, out: text(out) }
      })
    )
    expect(seen.before.registered).toBe(false)
    expect(seen.before.row._tag).toBe("None")
    expect(seen.out).toBe("up\n")
    expect(seen.after.registered).toBe(true)
    expect(seen.after.row._tag).toBe("Some")
  })

  it("a lazy provider is built on first use only, and one that cannot be built is an unavailable provider, not a failed engine", async () => {
    let built = 0
    const counted = Layer.unwrapEffect(Effect.sync(() => {
      built++
      return LocalProvider.layer({ home })
    }))
    const broken = { id: "broken", layer: Layer.fail(new Error("no such SDK")) }
    const layer = SkyRepl.layer({
      providers: [{ id: "local", layer: counted }, broken],
      store: SqliteStore.layer({ filename: join(home, "state.db") }),
      config: testSettings(home)
    })
    const seen = await Effect.runPromise(
      Effect.gen(function* () {
        const engine = yield* SkyRepl
        yield* listRuns()
        const beforeLaunch = built
        const out = yield* Effect.scoped(Effect.flatMap(launch({ command: "echo lazy" }), (r) => collect(r.output)))
        yield* Effect.scoped(Effect.flatMap(launch({ command: "true" }), (r) => r.result))
        const failed = yield* Effect.flip(Effect.scoped(launch({ command: "echo", provider: "broken" })))
        return { ids: engine.providerIds, beforeLaunch, afterLaunches: built, out: text(out), failed }
      }).pipe(Effect.provide(layer))
    )
    expect(seen.ids).toEqual(["local", "broken"])
    expect(seen.beforeLaunch).toBe(0)
    expect(seen.afterLaunches).toBe(1)
    expect(seen.out).toBe("lazy\n")
    expect(seen.failed).toMatchObject({ _tag: "ProviderError", provider: "broken", reason: "unavailable" })
    expect(seen.failed.message).toContain("no such SDK")
  })

  it("an exit the agent reports before the launch has recorded the run as running still counts as the command's exit", async () => {
    // The agent starts the run from its start-up environment and reports its exit long before
    // this slowed-down spawn returns, so the report reaches a run still recorded as pending.
    const slowSpawn = Layer.effect(
      Provider,
      Effect.map(LocalProvider.make({ home }), (local) => ({
        ...local,
        spawn: (name: string, spec: ParsedSpec, bootstrap: Bootstrap) => Effect.tap(local.spawn(name, spec, bootstrap), () => Effect.sleep("1 second"))
      }))
    )
    const layer = SkyRepl.layer({
      providers: [slowSpawn],
      store: SqliteStore.layer({ filename: join(home, "state.db") }),
      config: testSettings(home)
    })
    const { result, out } = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const run = yield* launch({ command: "echo early" })
          return { out: text(yield* collect(run.output)), result: yield* run.result }
        })
      ).pipe(Effect.provide(layer))
    )
    expect(out).toBe("early\n")
    expect(result).toMatchObject({ state: "succeeded", exitCode: 0, error: null })
  })
})

/**
 * An engine whose provider spawns at once but whose agent never calls back, as a cloud VM that
 * is still booting; `calls` counts its terminates.
 */
const bootingForever = () => {
  const calls = { terminate: 0 }
  const silent = Layer.effect(
    Provider,
    Effect.map(LocalProvider.make({ home }), (local) => ({
      ...local,
      spawn: () => Effect.succeed({ providerRef: "i-booting", region: null }),
      describe: () => Effect.succeed(calls.terminate > 0 ? ("gone" as const) : ("running" as const)),
      terminate: () => Effect.sync(() => void (calls.terminate += 1))
    }))
  )
  const config = { ...testSettings(home), bootTimeout: Duration.minutes(5) }
  return { calls, layer: SkyRepl.layer({ providers: [silent], store: SqliteStore.layer({ filename: join(home, "state.db") }), config }) }
}

/** A launch through `layer` that fails: its error, and what the store then holds. */
const failedLaunch = <E>(layer: Layer.Layer<SkyRepl, E>) =>
  Effect.runPromise(
    Effect.gen(function* () {
      const failed = yield* Effect.flip(Effect.scoped(launch({ command: "echo never" })))
      return { failed, instances: yield* listInstances(), runs: yield* listRuns() }
    }).pipe(Effect.provide(layer))
  )

describe("a provider that cannot spawn", () => {
  it("a spawn refused before it started anything ends the instance in the store without a terminate the provider could not do", async () => {
    const calls = { terminate: 0 }
    const refusing = Layer.effect(
      Provider,
      Effect.map(LocalProvider.make({ home }), (local) => ({
        ...local,
        spawn: () => beforeAnythingStarted(Effect.fail(new ProviderError({ provider: "local", operation: "spawn", reason: "unavailable", message: "no region (test)" }))),
        // As a provider whose every call fails on the same missing setting.
        terminate: () => Effect.suspend(() => {
          calls.terminate += 1
          return Effect.fail(new ProviderError({ provider: "local", operation: "terminate", reason: "unavailable", message: "no region (test)" }))
        })
      }))
    )
    const layer = SkyRepl.layer({ providers: [refusing], store: SqliteStore.layer({ filename: join(home, "state.db") }), config: testSettings(home) })
    const { failed, instances, runs } = await failedLaunch(layer)
    expect(failed).toMatchObject({ _tag: "ProviderError", nothingStarted: true, message: "no region (test)" })
    // Before: left "terminating" with its lease, and every later process failed to reap it.
    expect(instances.map((i) => i.state)).toEqual(["terminated"])
    expect(runs.map((r) => [r.state, r.error])).toEqual([["failed", "no region (test)"]])
    expect(calls.terminate).toBe(0)
  })

  it("a termination that fails is not reported as terminated: no \"terminated\" progress, the record left for a reaper", async () => {
    const refusing = Layer.effect(
      Provider,
      Effect.map(LocalProvider.make({ home }), (local) => ({
        ...local,
        spawn: () => Effect.succeed({ providerRef: "i-booting", region: null }),
        describe: () => Effect.succeed("running" as const),
        terminate: () => Effect.fail(new ProviderError({ provider: "local", operation: "terminate", reason: "auth", message: "not allowed (test)" }))
      }))
    )
    const config = { ...testSettings(home), heartbeatInterval: Duration.seconds(1), bootTimeout: Duration.seconds(1) }
    const phases: Array<string> = []
    const { failed, instances } = await Effect.runPromise(
      Effect.gen(function* () {
        const failed = yield* Effect.flip(Effect.scoped(launch({ command: "echo never", onProgress: (e) => void phases.push(e.phase) })))
        return { failed, instances: yield* listInstances() }
      }).pipe(
        Effect.provide(SkyRepl.layer({ providers: [refusing], store: SqliteStore.layer({ filename: join(home, "state.db") }), config })),
        // The failed termination is logged as an error, as it should be; not into the test's output.
        Logger.withMinimumLogLevel(LogLevel.None)
      )
    )
    expect(failed).toMatchObject({ _tag: "AgentError", reason: "boot-timeout" })
    expect(phases).toContain("terminating")
    expect(phases).not.toContain("terminated")
    expect(instances.filter((i) => i.providerRef === "i-booting").map((i) => i.state)).toEqual(["terminating"])
  }, 30_000)

  it("while an instance boots, the provider is asked whether it is gone at pauses that double, not every heartbeat", async () => {
    const calls = { describe: 0, terminated: false }
    const booting = Layer.effect(
      Provider,
      Effect.map(LocalProvider.make({ home }), (local) => ({
        ...local,
        spawn: () => Effect.succeed({ providerRef: "i-booting", region: null }),
        // Counted while it boots; once terminated, gone (the termination's confirmation).
        describe: () =>
          Effect.sync(() => {
            if (calls.terminated) return "gone" as const
            calls.describe += 1
            return "running" as const
          }),
        terminate: () => Effect.sync(() => void (calls.terminated = true))
      }))
    )
    // Heartbeats of 1 s: asked at 1 and 2 s, then 4 and 6 s; every heartbeat would be 7 times.
    const config = { ...testSettings(home), heartbeatInterval: Duration.seconds(1), bootTimeout: Duration.seconds(7) }
    const { failed } = await failedLaunch(SkyRepl.layer({ providers: [booting], store: SqliteStore.layer({ filename: join(home, "state.db") }), config }))
    expect(failed).toMatchObject({ _tag: "AgentError", reason: "boot-timeout" })
    expect(calls.describe).toBeGreaterThanOrEqual(3)
    expect(calls.describe).toBeLessThanOrEqual(4)
  }, 30_000)

  it("interrupted while it waits for an agent that never registers, a launch still terminates its instance, promptly", async () => {
    const { calls, layer } = bootingForever()
    const { elapsed, instances } = await Effect.runPromise(
      Effect.gen(function* () {
        const fiber = yield* Effect.fork(Effect.scoped(launch({ command: "echo never" })))
        yield* Effect.sleep("500 millis")
        const start = Date.now()
        // Before: the launch's finalizer waited for the run's end with a time limit that could
        // not fire in a finalizer, so this never returned (Ctrl-C of repl run hung).
        yield* Fiber.interrupt(fiber)
        return { elapsed: Date.now() - start, instances: yield* listInstances() }
      }).pipe(Effect.provide(layer))
    )
    expect(calls.terminate).toBe(1)
    expect(instances.map((i) => i.state)).toEqual(["terminated"])
    expect(elapsed).toBeLessThan(10_000)
  }, 30_000)

  it("a run cancelled while its instance boots ends at once, also when another controller asks, and the instance is terminated", async () => {
    const { calls, layer } = bootingForever()
    const { outcome, elapsed, result } = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const launching = yield* Effect.fork(launch({ command: "echo never" }))
          yield* Effect.sleep("500 millis")
          const runId = (yield* listRuns())[0]?.id ?? ""
          const start = Date.now()
          // Another controller on the same store, as `repl run cancel` in another terminal: it
          // asks this one, which used to answer only after the agent's 5 s of grace, by when
          // the asker had given up and taken the instance over.
          const answer = yield* Effect.promise(() => runEngine(cancel(runId)))
          const run = yield* Fiber.join(launching)
          const result = yield* run.result
          return { outcome: answer.outcome, elapsed: Date.now() - start, result }
        })
      ).pipe(Effect.provide(layer))
    )
    expect(outcome).toBe("cancelled-by-owner")
    expect(result).toMatchObject({ state: "cancelled", error: "cancelled before its agent started" })
    expect(elapsed).toBeLessThan(4_000)
    expect(calls.terminate).toBe(1)
    expect((await runEngine(listInstances())).map((i) => i.state)).toEqual(["terminated"])
  }, 30_000)

  it("a provider whose own settings cannot work refuses the launch with nothing recorded", async () => {
    const misconfigured = Layer.effect(
      Provider,
      Effect.map(LocalProvider.make({ home }), (local) => ({ ...local, configurationProblem: 'SKYREPL_FORK_SERVER: "bogus" is not one of auto, always, never' }))
    )
    const layer = SkyRepl.layer({ providers: [misconfigured], store: SqliteStore.layer({ filename: join(home, "state.db") }), config: testSettings(home) })
    const { failed, instances, runs } = await failedLaunch(layer)
    expect(failed).toMatchObject({ _tag: "ProviderMisconfigured", provider: "local", message: expect.stringContaining("SKYREPL_FORK_SERVER") })
    expect([instances, runs]).toEqual([[], []])
  })
})

describe("an agent that uploads past the end of the stored output", () => {
  it("is answered 409 with the offset where the stream continues, and nothing is stored", async () => {
    // The launch's own agent, and a second client holding its token as a confused agent would.
    const seen: Array<Bootstrap> = []
    const recording = Layer.effect(
      Provider,
      Effect.map(LocalProvider.make({ home }), (local) => ({
        ...local,
        spawn: (name: string, spec: ParsedSpec, bootstrap: Bootstrap) => Effect.zipRight(Effect.sync(() => seen.push(bootstrap)), local.spawn(name, spec, bootstrap))
      }))
    )
    const layer = SkyRepl.layer({ providers: [recording], store: SqliteStore.layer({ filename: join(home, "state.db") }), config: testSettings(home) })
    const { answer, out } = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const run = yield* launch({ command: "printf abc; sleep 600" })
          yield* Stream.runHead(run.output)
          const bootstrap = seen[0]!
          const answer = yield* Effect.promise(async () => {
            const response = await fetch(`${bootstrap.agentUrl}/v1/agent/output?runId=${run.id}&stream=stdout&offset=10`, {
              method: "POST",
              headers: { authorization: `Bearer ${bootstrap.token}`, "x-skyrepl-protocol": String(AGENT_PROTOCOL_VERSION) },
              body: "zz"
            })
            return { status: response.status, body: (await response.json()) as unknown }
          })
          yield* run.cancel
          return { answer, out: text(yield* collect(run.output)) }
        })
      ).pipe(Effect.provide(layer))
    )
    expect(answer).toEqual({ status: 409, body: { next: 3 } })
    expect(out).toBe("abc")
  })
})

describe("a store that fails", () => {
  /** An engine on the SQLite store in `home`, whose calls that end runs and instances fail (disk I/O) once `broken` is set. */
  const breakableEngine = () => {
    // broken: reads and writes that end runs and instances fail; outputBroken: appends fail;
    // writesBroken: every write fails and reads work (a store file made read-only).
    const state = { broken: false, outputBroken: false, writesBroken: false }
    const failure = (operation: string) => Effect.fail(new StoreError({ operation, reason: "io", message: "disk I/O error (test)" }))
    const store = Layer.effect(
      Store,
      Effect.map(Store, (inner) => ({
        ...inner,
        getRun: (id: string) => (state.broken ? failure("getRun") : inner.getRun(id)),
        transitionRun: (...args: Parameters<typeof inner.transitionRun>) =>
          state.broken || state.writesBroken ? failure("transitionRun") : inner.transitionRun(...args),
        getInstance: (id: string) => (state.broken ? failure("getInstance") : inner.getInstance(id)),
        transitionInstance: (...args: Parameters<typeof inner.transitionInstance>) =>
          state.broken || state.writesBroken ? failure("transitionInstance") : inner.transitionInstance(...args),
        listRunsForInstance: (id: string) => (state.broken ? failure("listRunsForInstance") : inner.listRunsForInstance(id)),
        appendOutput: (...args: Parameters<typeof inner.appendOutput>) =>
          state.outputBroken || state.writesBroken ? failure("appendOutput") : inner.appendOutput(...args)
      }))
    ).pipe(Layer.provide(SqliteStore.layer({ filename: join(home, "state.db") })))
    return { state, layer: SkyRepl.layer({ providers: [LocalProvider.layer({ home })], store, config: testSettings(home) }) }
  }

  it("a run whose end the store cannot record still ends, and its instance is terminated", async () => {
    const engine = breakableEngine()
    const { name, result } = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const run = yield* launch({ command: "sleep 1; echo done" })
          engine.state.broken = true
          return { name: run.instance.name, result: yield* run.result }
        })
      ).pipe(Effect.provide(engine.layer))
    )
    // The handle got the command's own end, with what the store could not do.
    expect(result).toMatchObject({ state: "succeeded", exitCode: 0 })
    expect(result.error).toContain("the store did not record the run's end")
    await eventually(`${name} gone`, async () => (await processesOf(name)).length === 0)
  })

  it("a run whose output the store cannot keep is stopped, failed, and its instance terminated, instead of going on for good", async () => {
    const engine = breakableEngine()
    const { name, result, output } = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const run = yield* launch({ command: "printf first; sleep 1; printf second; sleep 600" })
          const first = yield* Stream.runHead(run.output)
          engine.state.outputBroken = true
          const result = yield* run.result.pipe(Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("the run went on") }))
          return { name: run.instance.name, result, output: Option.map(first, (c) => text([c])) }
        })
      ).pipe(Effect.provide(engine.layer))
    )
    expect(output).toEqual(Option.some("first"))
    expect(result.state).toBe("failed")
    expect(result.error).toContain("the store could not keep the run's output")
    await eventually(`${name} gone`, async () => (await processesOf(name)).length === 0)
  })

  it("a store that can no longer be written ends the run's output stream and the run, and its instance is terminated", async () => {
    const engine = breakableEngine()
    const { name, output, result } = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const run = yield* launch({ command: "echo one; sleep 1; echo two; sleep 600" })
          const first = yield* Stream.runHead(run.output)
          engine.state.writesBroken = true
          // Followed from the start: it must end although the store never records the run's end.
          const output = yield* collect(run.output).pipe(Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("the output never ended") }))
          return { name: run.instance.name, output: [Option.map(first, (c) => text([c])), text(output)], result: yield* run.result }
        })
      ).pipe(Effect.provide(engine.layer))
    )
    expect(output).toEqual([Option.some("one\n"), "one\n"])
    expect(result.state).toBe("failed")
    expect(result.error).toContain("the store could not keep the run's output")
    expect(result.error).toContain("the store did not record the run's end")
    await eventually(`${name} gone`, async () => (await processesOf(name)).length === 0)
  })

  it("a SIGKILLed owner's instance is ended by the next engine although the store cannot be written (a full disk), and recorded once it can", async () => {
    const owner = startOwner(home, "sleep 600", { SKYREPL_LEASE_TTL: "5m" })
    // A live owner whose lease lapsed only because nothing can be renewed in a full store: left alone.
    const stalled = startOwner(home, "sleep 600", { SKYREPL_LEASE_TTL: "1s" })
    try {
      const { name } = await owner.launched
      const kept = (await stalled.launched).name
      owner.child.kill("SIGKILL")
      await owner.exited
      stalled.child.kill("SIGSTOP")
      await new Promise((r) => setTimeout(r, 1_500))
      // Reads work, every write fails, as on a full disk: the reaper cannot record a claim.
      const full = (operation: string) => Effect.fail(new StoreError({ operation, reason: "io", message: "database or disk is full (test)" }))
      const store = Layer.effect(
        Store,
        Effect.map(Store, (inner) => ({
          ...inner,
          upsertController: () => full("upsertController"),
          renewLeases: () => full("renewLeases"),
          claimExpiredInstances: () => full("claimExpiredInstances"),
          claimInstance: () => full("claimInstance"),
          transitionInstance: () => full("transitionInstance"),
          transitionRun: () => full("transitionRun"),
          transitionAllocation: () => full("transitionAllocation"),
          closeManifest: () => full("closeManifest")
        }))
      ).pipe(Layer.provide(SqliteStore.layer({ filename: join(home, "state.db") })))
      const layer = SkyRepl.layer({ providers: [LocalProvider.layer({ home })], store, config: testSettings(home) })
      const before = await Effect.runPromise(Effect.map(listInstances(), (all) => all.find((i) => i.name === name)?.state).pipe(Effect.provide(layer)))
      // Opening the engine is enough, as with a store that works; only the record lags.
      expect(before).toBe("allocated")
      expect(await processesOf(name)).toEqual([])
      expect((await processesOf(kept)).length).toBeGreaterThan(0)
      stalled.child.kill("SIGKILL")
      await stalled.exited
      const after = await runEngine(Effect.map(listInstances(), (all) => [name, kept].map((n) => all.find((i) => i.name === n)?.state)))
      expect(after).toEqual(["terminated", "terminated"])
      expect(await processesOf(kept)).toEqual([])
    } finally {
      owner.child.kill("SIGKILL")
      stalled.child.kill("SIGKILL")
    }
  })

  it("closing the scope terminates the instance through the provider even when the store fails and the agent cannot act", async () => {
    const engine = breakableEngine()
    const name = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const run = yield* launch({ command: "sleep 600" })
          // Stopped, the agent cannot end the instance when it is told to shut down.
          for (const pid of yield* Effect.promise(() => processesOf(run.instance.name))) process.kill(pid, "SIGSTOP")
          engine.state.broken = true
          return run.instance.name
        })
      ).pipe(Effect.provide(engine.layer))
    )
    expect(await processesOf(name)).toEqual([])
  })
})
