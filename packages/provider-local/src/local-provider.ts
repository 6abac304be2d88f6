import {
  agentArguments,
  agentRunVariables,
  instanceNameTime,
  InvalidSpec,
  isInstanceName,
  PROVIDER_SPEC_VERSION,
  Provider,
  ProviderError,
  beforeAnythingStarted,
  type Bootstrap,
  type InstanceRef,
  type ObservedState,
  type ParsedSpec,
  type ProviderCapabilities,
  type ProviderInstance,
  type ProviderService,
  type SpawnResult,
  type SpecOptions
} from "@skyrepl/core"
import { Effect, Layer } from "effect"
import { existsSync } from "node:fs"
import { join } from "node:path"
import {
  bootTimeMs,
  consoleTail,
  findSandboxes,
  instancePaths,
  killSandbox,
  type LocalApiError,
  type NamespaceSupport,
  probeNamespaces,
  probeNamespacesSync,
  procAvailable,
  removeInstanceDir,
  freshProcesses,
  inheritedEnv,
  scanProcesses,
  startSandbox,
  startTimeMs,
  terminateSandbox
} from "./local-api.ts"
import { makeAgentCache } from "./agent-cache.ts"
import { makeForkServer } from "./fork-server.ts"
import { findOnPath, isExecutable, type LocalProviderOptions, resolveOptions } from "./options.ts"

export const PROVIDER_ID = "local"

/** How many ended sandboxes a provider remembers for `describe` (see `ended`). */
const ENDED_REMEMBERED = 512

/** How many of a sandbox's last console lines a launch that failed while booting shows. */
const CONSOLE_TAIL_LINES = 5

/** `sandbox`: namespaces where this machine has them; `process`: always a plain process group. */
export type LocalSpecMode = "sandbox" | "process"

export const validSpecForms: ReadonlyArray<string> = [
  "(empty) or sandbox: namespaces when available, else a process group",
  "process: a plain process group"
]

const parsedSpec = (mode: LocalSpecMode): ParsedSpec => ({
  provider: PROVIDER_ID,
  canonical: mode,
  region: null,
  attributes: { mode }
})

export const parseSpec = (spec: string | undefined, options: SpecOptions = {}): Effect.Effect<ParsedSpec, InvalidSpec> => {
  const text = (spec ?? "").trim()
  const invalid = (message: string) =>
    Effect.fail(new InvalidSpec({ provider: PROVIDER_ID, spec: text, message, validForms: validSpecForms }))
  // The engine refuses these first (no regions, no spot in the capabilities); a direct caller
  // must not get a silently ignored setting either.
  if (options.region !== undefined) return invalid(`the local provider has no regions (asked for "${options.region}")`)
  if (options.spot === true) return invalid("the local provider has no spot instances")
  if (text === "" || text === "sandbox") return Effect.succeed(parsedSpec("sandbox"))
  if (text === "process") return Effect.succeed(parsedSpec("process"))
  return invalid(`the local provider does not know the spec "${text}"; use "sandbox", "process" or nothing`)
}

const toProviderError = (error: LocalApiError): ProviderError =>
  new ProviderError({
    provider: PROVIDER_ID,
    operation: error.operation,
    reason: error.reason,
    message: error.message,
    cause: error.cause
  })

const fail = (operation: string, reason: ProviderError["reason"], message: string) =>
  Effect.fail(new ProviderError({ provider: PROVIDER_ID, operation, reason, message }))


/**
 * Builds the provider. Whether namespaces work here is probed once, on first need (a spawn, or
 * someone reading `capabilities.isolation`): the probe starts a process, and most commands
 * (listings, cancel, the sweep) never spawn. Everything else is read from /proc on each call,
 * so a fresh controller sees every sandbox without a store.
 */
export const make = (options: LocalProviderOptions = {}): Effect.Effect<ProviderService> =>
  Effect.map(build(options), (built) => built.service)

/**
 * The provider for a layer: its fork server, if it started one, ends with the layer. (A
 * provider from `make` leaves its server to end with this process, which closes its stdin.)
 */
export const layer = (options: LocalProviderOptions = {}): Layer.Layer<Provider> =>
  Layer.scoped(
    Provider,
    Effect.gen(function* () {
      const built = yield* build(options)
      yield* Effect.addFinalizer(() => built.close)
      return built.service
    })
  )

const build = (options: LocalProviderOptions): Effect.Effect<{ readonly service: ProviderService; readonly close: Effect.Effect<void> }> =>
  Effect.gen(function* () {
    const resolved = yield* resolveOptions(options)
    const hasProc = procAvailable()
    const unshare = resolved.isolation === "none" || !hasProc ? null : findOnPath("unshare")
    /** `undefined` until probed. */
    let probed: NamespaceSupport | null | undefined = unshare === null ? null : undefined
    // One probe at a time, and only an answer is kept: Effect.cached kept an interruption too
    // (a first launch under a time limit, or disposed), and every later spawn then failed as
    // interrupted.
    const probing = yield* Effect.makeSemaphore(1)
    const probeOnce = probing.withPermits(1)(
      Effect.suspend(() =>
        probed !== undefined ? Effect.succeed(probed) : Effect.tap(probeNamespaces(unshare), (result) => Effect.sync(() => (probed = result)))
      )
    )
    const namespacesNow = Effect.suspend(() => (probed !== undefined ? Effect.succeed(probed) : probeOnce))
    // Insisting on namespaces where they do not work fails the spawns, not the layer: every
    // provider layer is built for every CLI command, and the core asks that this never fails.
    const insistOnNamespaces = resolved.isolation === "namespaces"
    const instancesDir = join(resolved.home, "local", "instances")
    const agentCache = makeAgentCache(join(resolved.home, "local", "agent-cache"))
    const forkServer =
      resolved.forkServer === "never"
        ? undefined
        : makeForkServer(inheritedEnv(), join(resolved.home, "local", "fork-server.log"), resolved.forkServer)
    const capabilities: ProviderCapabilities = {
      get isolation() {
        if (insistOnNamespaces) return "namespaces"
        probed ??= probeNamespacesSync(unshare)
        return probed !== null ? "namespaces" : "none"
      },
      spot: false,
      snapshots: false,
      regions: false,
      warmPool: false,
      ssh: false,
      // The sandbox is a process of this machine: its uploads cross no network.
      agentOnHost: true
    }

    const requireProc = (operation: string) =>
      hasProc ? Effect.void : fail(operation, "unavailable", "the local provider needs /proc (Linux) to track its sandboxes")

    const requireName = (operation: string, name: string) =>
      isInstanceName(name) ? Effect.void : fail(operation, "invalid-request", `"${name}" is not a SkyREPL instance name`)

    const sandboxes = Effect.map(freshProcesses, (processes) => findSandboxes(processes, PROVIDER_ID))

    /**
     * Sandboxes this provider terminated and saw end, the most recent few hundred. The engine
     * asks `describe` right after each terminate, to confirm the instance is gone; terminate has
     * just seen that (the namespace's init gone, or a scan of /proc showing none of it), and no
     * process can bring an ended sandbox back, so `describe` answers from here instead of
     * scanning /proc again. A spawn of the name (which the engine never repeats) forgets it.
     */
    const ended = new Set<string>()
    const rememberEnded = (name: string) => {
      ended.delete(name)
      ended.add(name)
      if (ended.size > ENDED_REMEMBERED) {
        const oldest = ended.values().next()
        if (oldest.done !== true) ended.delete(oldest.value)
      }
    }

    /**
     * The run, for the agent to start before it registers: one round trip to the controller and
     * back saved from every launch. Linux caps one environment string at 128 KiB (and refuses
     * the exec beyond it), so a larger run is left to the event the engine sends anyway.
     */
    const startupRun = (bootstrap: Bootstrap): Readonly<Record<string, string>> => {
      const variables = agentRunVariables(bootstrap.run)
      return Object.values(variables).every((v) => Buffer.byteLength(v) <= 64 * 1024) ? variables : {}
    }

    /**
     * Names whose spawn got as far as starting a sandbox, until terminated: a later try of the
     * same spawn that fails its checks has still left that sandbox behind.
     */
    const started = new Set<string>()

    /** What a spawn checks before it starts anything: the interpreter, and the namespaces. */
    const spawnChecks = (name: string, spec: ParsedSpec, bootstrap: Bootstrap) =>
      Effect.gen(function* () {
        yield* requireName("spawn", name)
        ended.delete(name)
        yield* requireProc("spawn")
        if (resolved.problems.length > 0) return yield* fail("spawn", "invalid-request", resolved.problems.join("; "))
        const python = resolved.python.path
        if (python === null) {
          return yield* fail(
            "spawn",
            "unavailable",
            `no ${resolved.python.requested} on PATH (set SKYREPL_PYTHON or the python option)`
          )
        }
        // Checked here because inside a namespace sandbox a failed exec would only show as a
        // sandbox that dies at once, after spawn had reported success.
        if (!isExecutable(python)) {
          return yield* fail("spawn", "unavailable", `the python interpreter ${python} is not an executable file`)
        }
        if (!existsSync(bootstrap.agentScript)) {
          return yield* fail("spawn", "unavailable", `the agent script ${bootstrap.agentScript} does not exist`)
        }
        const sandboxed = spec.attributes["mode"] !== "process"
        const namespaces = sandboxed ? yield* namespacesNow : null
        if (sandboxed && namespaces === null && insistOnNamespaces) {
          return yield* fail(
            "spawn",
            "unavailable",
            "isolation \"namespaces\" was asked for, but unshare cannot create pid/mount/uts/ipc namespaces here"
          )
        }
        return { python, namespaces }
      })

    const spawn = (name: string, spec: ParsedSpec, bootstrap: Bootstrap): Effect.Effect<SpawnResult, ProviderError> =>
      Effect.gen(function* () {
        const checks = spawnChecks(name, spec, bootstrap)
        const { python, namespaces } = yield* started.has(name) ? checks : beforeAnythingStarted(checks)
        const paths = instancePaths(instancesDir, name)
        // The directory exists only while a sandbox of this name runs or after one ended without
        // a terminate; scanning /proc only then keeps the common path free of a scan. Not a
        // failure before anything started: the running one may be an earlier try of this spawn.
        if (existsSync(paths.dir)) {
          const live = yield* Effect.mapError(sandboxes, toProviderError)
          if (live.has(name)) return yield* fail("spawn", "invalid-request", `instance ${name} is already running`)
        }
        started.add(name)
        const pid = yield* startSandbox({
          provider: PROVIDER_ID,
          name,
          paths,
          namespaces,
          python,
          agentScript: agentCache.pathFor(bootstrap.agentScript, python),
          agentSource: bootstrap.agentScript,
          agentArgs: agentArguments(name, bootstrap, { shutdown: "exit", workdir: paths.workdir, log: paths.agentLog }),
          secretEnv: { SKYREPL_AGENT_TOKEN: bootstrap.token, ...startupRun(bootstrap) }
        }, forkServer).pipe(Effect.mapError(toProviderError))
        return { providerRef: String(pid), region: null }
      })

    const describe = (ref: InstanceRef): Effect.Effect<ObservedState, ProviderError> =>
      Effect.gen(function* () {
        yield* requireName("describe", ref.name)
        yield* requireProc("describe")
        if (ended.has(ref.name)) return "gone"
        const live = yield* Effect.mapError(sandboxes, toProviderError)
        const sandbox = live.get(ref.name)
        if (sandbox === undefined) return "gone"
        // A sandbox's root is the process it was started as: its agent, or the `unshare` around
        // it. Another root means that process is gone and what is left is a run's processes, a
        // process group's that outlived its agent: nothing ends them, reports on them or hears
        // from a controller for them any more (no dead-man switch), and they will not become an
        // instance again. Stopping, not gone: they still have to be terminated.
        const started = ref.providerRef === null ? null : Number(ref.providerRef)
        return started !== null && Number.isSafeInteger(started) && sandbox.root.pid !== started ? "stopping" : "running"
      })

    const list = (): Effect.Effect<ReadonlyArray<ProviderInstance>, ProviderError> =>
      Effect.gen(function* () {
        yield* requireProc("list")
        const live = yield* Effect.mapError(sandboxes, toProviderError)
        const boot = yield* Effect.mapError(bootTimeMs, toProviderError)
        const out: Array<ProviderInstance> = []
        for (const sandbox of live.values()) {
          // A marker that is not a well-formed name was not written by SkyREPL.
          if (!isInstanceName(sandbox.name)) continue
          out.push({
            name: sandbox.name,
            providerRef: String(sandbox.root.pid),
            region: null,
            state: "running",
            createdAt: instanceNameTime(sandbox.name) ?? (boot === null ? null : startTimeMs(sandbox.root, boot))
          })
        }
        return out.sort((a, b) => a.name.localeCompare(b.name))
      })

    const terminate = (ref: InstanceRef): Effect.Effect<void, ProviderError> =>
      Effect.gen(function* () {
        yield* requireName("terminate", ref.name)
        yield* requireProc("terminate")
        yield* terminateSandbox(PROVIDER_ID, ref.name, resolved.terminateTimeout, ref.providerRef).pipe(
          Effect.mapError(toProviderError)
        )
        rememberEnded(ref.name)
        started.delete(ref.name)
        // The sandbox has ended by now: a directory that cannot be removed (a read-only or full
        // home, a mount inside it) is left, said in a warning, and does not fail the termination.
        // Failing it kept the record `terminating`, made every later command try again, and
        // had `repl run` say the instance might still be running.
        yield* removeInstanceDir(instancePaths(instancesDir, ref.name)).pipe(
          Effect.catchAll((error) => Effect.logWarning(`${ref.name} has ended, but its directory is left: ${error.message}`))
        )
      })

    const readConsoleTail = (ref: InstanceRef): Effect.Effect<ReadonlyArray<string>> =>
      Effect.sync(() => (isInstanceName(ref.name) ? consoleTail(instancePaths(instancesDir, ref.name), CONSOLE_TAIL_LINES) : []))

    // Signals are synchronous, so an exiting process can still end its sandboxes; /proc is not
    // waited on here (the next process confirms and records the termination).
    const terminateSync = (ref: InstanceRef): void => {
      const processes = Effect.runSync(Effect.orElseSucceed(scanProcesses, () => []))
      const sandbox = findSandboxes(processes, PROVIDER_ID).get(ref.name)
      if (sandbox !== undefined) killSandbox(sandbox, processes)
    }

    const service = {
      id: PROVIDER_ID,
      specVersion: PROVIDER_SPEC_VERSION,
      capabilities,
      ...(resolved.problems.length === 0 ? {} : { configurationProblem: resolved.problems.join("; ") }),
      parseSpec,
      spawn,
      describe,
      list,
      terminate,
      consoleTail: readConsoleTail,
      terminateSync
    } satisfies ProviderService
    return { service, close: forkServer?.close ?? Effect.void }
  })
