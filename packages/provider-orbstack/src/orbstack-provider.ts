import {
  beforeAnythingStarted,
  consoleLines,
  describeCause,
  instanceNameTime,
  isInstanceName,
  PROVIDER_SPEC_VERSION,
  Provider,
  type Bootstrap,
  type InstanceRef,
  type ObservedState,
  type ParsedSpec,
  type ProviderCapabilities,
  type ProviderError,
  type ProviderInstance,
  type ProviderService,
  type SpawnResult
} from "@skyrepl/core"
import { Duration, Effect, Layer, Option } from "effect"
import { readFileSync } from "node:fs"
import { BOOTSTRAP_LOG, bootstrapScript } from "./bootstrap.ts"
import { bootTimedOut, ipExhausted, isOrbctlMissing, orbctlMissing, providerError, vmNotFound } from "./failures.ts"
import { agentUrlFor, discoverIp, systemLookup } from "./network.ts"
import { loadedExecaSync, makeOrbctl, observedState, type Orbctl } from "./orbstack-api.ts"
import { locateOrbctl, type OrbStackProviderOptions, type ResolvedOptions, resolveOptions } from "./options.ts"
import { makeSnapshots } from "./snapshots.ts"
import { parseSpec as parseOrbStackSpec, PROVIDER_ID, snapshotOf, specOf } from "./spec.ts"

export { PROVIDER_ID, validSpecForms } from "./spec.ts"

export const capabilities: ProviderCapabilities = {
  isolation: "vm",
  spot: false,
  snapshots: true,
  regions: false,
  warmPool: false,
  ssh: false
}

/** How many of the bootstrap log's last lines a launch that failed while booting shows. */
const CONSOLE_TAIL_LINES = 5

/** `orbctl create` may first download the image, which a slow network stretches to minutes. */
const createTimeout = Duration.minutes(10)

interface Client {
  readonly command: string
  readonly orbctl: Orbctl
  /** The same, with the long time limit `create` needs. */
  readonly creator: Orbctl
}

const makeClient = (command: string, resolved: ResolvedOptions): Client => {
  const options = { command, env: resolved.orbctlEnv, timeout: resolved.commandTimeout }
  return {
    command,
    orbctl: makeOrbctl(options),
    creator: makeOrbctl({ ...options, timeout: Duration.max(createTimeout, resolved.commandTimeout) })
  }
}

/**
 * Builds the provider. Nothing here touches OrbStack: building must be cheap and must not fail
 * on a machine without it (every CLI command builds every provider). `orbctl version` runs on
 * first use instead, and a missing `orbctl` fails that use with reason `unavailable`.
 */
export const make = (options: OrbStackProviderOptions = {}): Effect.Effect<ProviderService> =>
  Effect.gen(function* () {
    const resolved = yield* resolveOptions(options)
    const lookupHost = resolved.lookupHost ?? systemLookup

    // Start-up, once per provider: locate orbctl and ask its version. Only success is
    // remembered, so OrbStack installed (or launched) after a failure is picked up by the next
    // call without a restart.
    let client: Client | null = null
    // Set when no orbctl exists here: then no OrbStack machine can exist either.
    let absent = false
    const connect: Effect.Effect<Client, ProviderError> = Effect.suspend(() => {
      if (client !== null) return Effect.succeed(client)
      if (resolved.configError !== null) return Effect.fail(providerError("start", "invalid-request", resolved.configError))
      const command = locateOrbctl(resolved.orbctl, resolved.orbctlEnv["PATH"] ?? process.env["PATH"])
      if (command === null) {
        absent = true
        return Effect.fail(orbctlMissing("start", resolved.orbctl))
      }
      const made = makeClient(command, resolved)
      return made.orbctl.version.pipe(
        Effect.mapError((error) => {
          absent = isOrbctlMissing(error)
          return error.reason === "unavailable"
            ? error
            : providerError("start", "unavailable", `orbctl version failed, so OrbStack cannot be used: ${error.message}`, error)
        }),
        Effect.map(() => {
          absent = false
          client = made
          return made
        })
      )
    })

    /**
     * For describe and terminate: `null` when OrbStack is not installed here. An instance record
     * of this provider on such a machine can only come from a spawn that never reached OrbStack,
     * so there is nothing to end; saying so keeps every later command from retrying it forever.
     */
    const connectUnlessAbsent: Effect.Effect<Client | null, ProviderError> = connect.pipe(
      Effect.catchIf(
        (error) => absent && isOrbctlMissing(error),
        () => Effect.succeed(null)
      )
    )

    const requireName = (operation: string, name: string) =>
      isInstanceName(name)
        ? Effect.void
        : Effect.fail(providerError(operation, "invalid-request", `"${name}" is not a SkyREPL instance name; SkyREPL leaves other machines alone`))

    /** Polls `orbctl info` until the machine runs; returns its OrbStack id. */
    const awaitRunning = (orbctl: Orbctl, name: string, deadline: number) =>
      Effect.gen(function* () {
        for (;;) {
          const info = yield* orbctl.info(name)
          if (Option.isNone(info)) return yield* vmNotFound("spawn", name)
          const state = info.value.record.state
          if (state === "running") return info.value.record.id
          if (Date.now() >= deadline) return yield* bootTimedOut(name, resolved.bootTimeout, state)
          yield* Effect.sleep(resolved.pollInterval)
        }
      })

    /** Runs the bootstrap; its failure is reported, never raised (see `SpawnResult.bootstrapFailure`). */
    const runBootstrap = (orbctl: Orbctl, name: string, bootstrap: Bootstrap, agent: Buffer) => {
      const script = bootstrapScript({
        name,
        agentUrl: agentUrlFor(bootstrap.agentUrl, resolved.hostAlias),
        directUrl: bootstrap.agentUrl,
        token: bootstrap.token,
        heartbeatIntervalMs: bootstrap.heartbeatIntervalMs,
        deadmanTimeoutMs: bootstrap.deadmanTimeoutMs,
        agent
      })
      const where = `its log stays at ${BOOTSTRAP_LOG} in the VM (orbctl run -m ${name} cat ${BOOTSTRAP_LOG})`
      return orbctl.run(name, ["sh", "-s"], { user: "root", input: script }).pipe(
        Effect.map((result) => {
          if (result.exitCode === 0) return null
          const reason = result.stderr.trim().split("\n").at(-1) || `exit status ${result.exitCode}`
          return `bootstrap of ${name} failed: ${reason}; ${where}`
        }),
        Effect.catchAll((error) => Effect.succeed(`bootstrap of ${name} failed: ${error.message}; ${where}`))
      )
    }

    /** Best effort, after a failed spawn: nothing SkyREPL created may be left running. */
    const discard = (orbctl: Orbctl, name: string) =>
      orbctl.stop(name).pipe(
        Effect.ignore,
        Effect.zipRight(orbctl.delete(name)),
        Effect.ignore
      )

    const spawn = (name: string, spec: ParsedSpec, bootstrap: Bootstrap): Effect.Effect<SpawnResult, ProviderError> =>
      Effect.gen(function* () {
        const { orbctl, creator, agent } = yield* beforeAnythingStarted(
          Effect.gen(function* () {
            const client = yield* connect
            yield* requireName("spawn", name)
            const agent = yield* Effect.try({
              try: () => readFileSync(bootstrap.agentScript),
              catch: (cause) => providerError("spawn", "unavailable", `cannot read the agent script ${bootstrap.agentScript}: ${describeCause(cause)}`, cause)
            })
            return { ...client, agent }
          })
        )
        // A snapshot is a stopped machine: the new one is its clone, started. A clone that then
        // fails is deleted below; a failed create is rolled back by OrbStack itself.
        const snapshot = snapshotOf(spec)
        if (snapshot === null) yield* creator.create(name, specOf(spec))
        else yield* creator.clone(snapshot, name)
        return yield* Effect.gen(function* () {
          if (snapshot !== null) yield* orbctl.start(name)
          const providerRef = yield* awaitRunning(orbctl, name, Date.now() + Duration.toMillis(resolved.bootTimeout))
          const address = yield* discoverIp(orbctl, name, lookupHost)
          if (address === null) {
            const asked = `orbctl info, DNS for ${name}.orb.local and hostname -I in the machine`
            return yield* ipExhausted("spawn", name, `it runs, but ${asked} all report no address`)
          }
          yield* Effect.logDebug(`${name}: address ${address.ip} (from ${address.source})`)
          const bootstrapFailure = yield* runBootstrap(orbctl, name, bootstrap, agent)
          return { providerRef, region: null, ...(bootstrapFailure === null ? {} : { bootstrapFailure }) } satisfies SpawnResult
        }).pipe(Effect.onError(() => discard(orbctl, name)))
      })

    const describe = (ref: InstanceRef): Effect.Effect<ObservedState, ProviderError> =>
      Effect.gen(function* () {
        yield* requireName("describe", ref.name)
        const connected = yield* connectUnlessAbsent
        if (connected === null) return "gone"
        const info = yield* connected.orbctl.info(ref.name)
        return Option.match(info, { onNone: () => "gone" as const, onSome: (i) => observedState(i.record.state) })
      })

    // Every machine whose name is a SkyREPL instance name, whatever its state: a stopped one
    // still holds a disk, and the sweep must find it with no store to help.
    const list = (): Effect.Effect<ReadonlyArray<ProviderInstance>, ProviderError> =>
      Effect.gen(function* () {
        const { orbctl } = yield* connect
        const machines = yield* orbctl.list
        return machines
          .filter((m) => isInstanceName(m.name))
          .map((m) => ({
            name: m.name,
            providerRef: m.id,
            region: null,
            state: observedState(m.state),
            createdAt: instanceNameTime(m.name) ?? null
          }))
          .sort((a, b) => a.name.localeCompare(b.name))
      })

    const terminate = (ref: InstanceRef): Effect.Effect<void, ProviderError> =>
      Effect.gen(function* () {
        yield* requireName("terminate", ref.name)
        const connected = yield* connectUnlessAbsent
        if (connected === null) return
        const { orbctl } = connected
        // Stopping first ends the agent and its runs the way a shutdown would; a machine that
        // cannot stop (still being created, say) is deleted all the same.
        const existed = yield* orbctl.stop(ref.name).pipe(
          Effect.catchIf((error) => error.reason !== "unavailable", () => Effect.succeed(true))
        )
        if (existed) yield* orbctl.delete(ref.name)
      })

    // The bootstrap's log holds what the machine said while the agent came up: its own steps,
    // and the agent's stderr (an agent that cannot reach the controller says so there).
    const consoleTail = (ref: InstanceRef): Effect.Effect<ReadonlyArray<string>> =>
      Effect.gen(function* () {
        if (!isInstanceName(ref.name)) return []
        const connected = yield* connectUnlessAbsent
        if (connected === null) return []
        const result = yield* connected.orbctl.run(ref.name, ["tail", "-n", String(CONSOLE_TAIL_LINES), BOOTSTRAP_LOG], { user: "root" })
        return result.exitCode === 0 ? consoleLines(result.stdout, CONSOLE_TAIL_LINES) : []
      }).pipe(Effect.orElseSucceed((): ReadonlyArray<string> => []))

    // A process that is exiting can still wait for a child process: `orbctl delete -f` is
    // synchronous enough for the Promise client's exit handler (see ProviderService).
    const terminateSync = (ref: InstanceRef): void => {
      const command = client?.command ?? locateOrbctl(resolved.orbctl, resolved.orbctlEnv["PATH"] ?? process.env["PATH"])
      const execaSync = loadedExecaSync()
      if (!isInstanceName(ref.name) || command === null || execaSync === undefined) return
      execaSync(command, ["delete", "-f", ref.name], { env: resolved.orbctlEnv, reject: false, stdin: "ignore", timeout: 30_000 })
    }

    return {
      id: PROVIDER_ID,
      specVersion: PROVIDER_SPEC_VERSION,
      capabilities,
      ...(resolved.configError === null ? {} : { configurationProblem: resolved.configError }),
      parseSpec: (spec, specOptions) => parseOrbStackSpec(spec, specOptions, resolved.defaultArch),
      spawn,
      describe,
      list,
      terminate,
      consoleTail,
      terminateSync,
      snapshots: makeSnapshots(Effect.map(connect, (c) => c.orbctl), requireName)
    } satisfies ProviderService
  })

export const layer = (options: OrbStackProviderOptions = {}): Layer.Layer<Provider> => Layer.effect(Provider, make(options))
