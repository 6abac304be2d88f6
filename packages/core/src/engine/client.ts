import { Cause, ConfigError, Effect, Exit, Fiber, type Layer, ManagedRuntime, Scope, Stream } from "effect"
import { describeConfigError } from "../config.ts"
import { ClientDisposed } from "../errors.ts"
import type { Allocation } from "../domain/allocation.ts"
import type { Instance } from "../domain/instance.ts"
import type { OutputChunk, Run } from "../domain/run.ts"
import type { AllocationFilter, InstanceFilter, RunFilter } from "../store.ts"
import * as Api from "./api.ts"
import type { AttachOptions } from "./attach.ts"
import type { CancelResult } from "./cancel.ts"
import type { LaunchOptions, RunHandle } from "./launch.ts"
import type { OrphanReport, ScanOptions } from "./orphans.ts"
import type { RunResult } from "./service.ts"
import { SkyRepl as SkyReplTag } from "./skyrepl.ts"
import type { SkyRepl } from "./skyrepl.ts"
import type { InstanceRef } from "../provider.ts"

/** A run launched through the Promise client; `await using` terminates its instance. */
export interface ClientRun extends AsyncDisposable {
  readonly id: string
  readonly instance: { readonly id: string; readonly name: string; readonly provider: string }
  /** All output from the first byte, live until the run ends. Each iteration starts over. */
  readonly output: AsyncIterable<OutputChunk>
  readonly result: () => Promise<RunResult>
  readonly cancel: () => Promise<CancelResult>
  /**
   * Cancels the run if still going and terminates the instance. Idempotent; resolves once the
   * instance is ended, also when the client's `dispose` is ending it already.
   */
  readonly dispose: () => Promise<void>
}

export interface SkyReplClient extends AsyncDisposable {
  readonly launch: (options: LaunchOptions) => Promise<ClientRun>
  readonly attach: (runId: string, options?: AttachOptions) => AsyncIterable<OutputChunk>
  readonly cancel: (runId: string) => Promise<CancelResult>
  readonly scanOrphans: (options?: ScanOptions) => Promise<OrphanReport>
  readonly getRun: (runId: string) => Promise<Run>
  readonly listRuns: (filter?: RunFilter) => Promise<ReadonlyArray<Run>>
  readonly listInstances: (filter?: InstanceFilter) => Promise<ReadonlyArray<Instance>>
  readonly listAllocations: (filter?: AllocationFilter) => Promise<ReadonlyArray<Allocation>>
  /** Terminates every instance this client launched and stops the engine. Idempotent. */
  readonly dispose: () => Promise<void>
}

/**
 * What a rejection carries. A `ConfigError` is not an `Error`, and its message leaves out the
 * setting (Node then prints "[object Object]" for it): it is thrown as an `Error` whose message
 * names the setting, with the `ConfigError`'s own fields (`_op`, `path`) kept for matching.
 */
const thrown = (error: unknown): unknown =>
  ConfigError.isConfigError(error) ? Object.assign(new Error(), error, { name: "ConfigError", message: describeConfigError(error) }) : error

/**
 * What each live client must end synchronously as the process exits (see `onExit` in
 * `makeClient`). One process listener serves them all: one per client made Node warn of a
 * listener leak once eleven clients were live (a notebook, a Jest file with a helper per
 * `describe`).
 */
const exitHooks = new Set<() => void>()

const onProcessExit = (): void => {
  for (const hook of exitHooks) hook()
}

const watchExit = (hook: () => void): void => {
  if (exitHooks.size === 0) process.on("exit", onProcessExit)
  exitHooks.add(hook)
}

const unwatchExit = (hook: () => void): void => {
  if (!exitHooks.delete(hook) || exitHooks.size > 0) return
  process.off("exit", onProcessExit)
}

/**
 * The disposers of the clients not yet disposed in this process, for `onTerminatingSignal`.
 */
const liveClients = new Set<() => Promise<void>>()

/** Signals whose default action ends the process, and which a terminal or a supervisor sends. */
const TERMINATING_SIGNALS: ReadonlyArray<NodeJS.Signals> = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"]

/**
 * Ctrl-C (or Ctrl-\), a supervisor's SIGTERM or a closed terminal would kill a script at once, with no
 * finalizer and no `exit` event, leaving its instances to the next SkyREPL process or the
 * dead-man switch. While a client is live, those signals first dispose every client (ending
 * their instances), then are raised again with the default action, so the process still dies
 * of the signal as it would have. A program with a listener of its own for the signal has
 * chosen what the signal does: the client then stays out of the way.
 */
const onTerminatingSignal = (signal: NodeJS.Signals): void => {
  if (process.listenerCount(signal) > 1) return
  for (const each of TERMINATING_SIGNALS) process.off(each, onTerminatingSignal)
  void Promise.allSettled([...liveClients].map((dispose) => dispose())).then(() => process.kill(process.pid, signal))
}

const watchSignals = (dispose: () => Promise<void>): void => {
  if (liveClients.size === 0) for (const signal of TERMINATING_SIGNALS) process.on(signal, onTerminatingSignal)
  liveClients.add(dispose)
}

const unwatchSignals = (dispose: () => Promise<void>): void => {
  if (!liveClients.delete(dispose) || liveClients.size > 0) return
  for (const signal of TERMINATING_SIGNALS) process.off(signal, onTerminatingSignal)
}

/**
 * The Promise facade over the engine for Jest, notebooks and plain scripts. Rejections carry
 * the same tagged errors as the Effect API (not a wrapper), so `error._tag` can be matched.
 */
export const makeClient = async <E>(layer: Layer.Layer<SkyRepl, E>): Promise<SkyReplClient> => {
  const runtime = ManagedRuntime.make(layer)
  let disposed: Promise<void> | null = null
  const afterDispose = () => new ClientDisposed({ message: "this SkyREPL client was disposed; make another with SkyRepl.make" })
  const run = async <A, E2>(effect: Effect.Effect<A, E2, SkyRepl>): Promise<A> => {
    if (disposed !== null) throw afterDispose()
    const exit = await runtime.runPromiseExit(effect)
    if (Exit.isSuccess(exit)) return exit.value
    throw thrown(Cause.squash(exit.cause))
  }
  // Build now, so a bad store path or provider fails here rather than at the first launch.
  await run(Effect.void)
  const built = await runtime.runtime()

  const open = new Set<Scope.CloseableScope>()
  const engine = await runtime.runPromise(SkyReplTag)
  // Instances of runs not yet disposed: what an exiting process must still end (see onExit).
  const running = new Map<string, { readonly provider: string; readonly ref: InstanceRef }>()

  // Leaving a REPL or calling process.exit skips every asynchronous finalizer. The `exit` event
  // is the last moment anything can run, and only synchronously: end what providers can end
  // that way. The store is reconciled by the next SkyREPL process, which finds this owner dead,
  // and the agent's dead-man switch covers providers that cannot terminate synchronously.
  const onExit = () => {
    for (const { provider, ref } of running.values()) {
      try {
        engine.builtProvider(provider)?.terminateSync?.(ref)
      } catch {
        // Exiting anyway; the layers after this one end what this could not.
      }
    }
  }
  watchExit(onExit)
  // Scopes being closed, by a run's dispose or by the client's: the other caller waits for the
  // same close. A run's dispose that found its scope taken resolved at once, its instance still
  // running; and the client's dispose, not waiting for the run's, closed the store under it.
  const closing = new Map<Scope.CloseableScope, Promise<void>>()
  const closeScope = (scope: Scope.CloseableScope): Promise<void> => {
    const under = closing.get(scope)
    if (under !== undefined) return under
    if (!open.delete(scope)) return Promise.resolve()
    const closed = runtime.runPromise(Scope.close(scope, Exit.void))
    closing.set(scope, closed)
    const settle = () => {
      closing.delete(scope)
    }
    closed.then(settle, settle)
    return closed
  }

  const iterate = <E2>(stream: Stream.Stream<OutputChunk, E2, SkyRepl>): AsyncIterable<OutputChunk> => ({
    [Symbol.asyncIterator]: () =>
      Stream.toAsyncIterableRuntime(
        Stream.unwrap(Effect.suspend(() => (disposed !== null ? Effect.fail(afterDispose()) : Effect.succeed(stream)))),
        built
      )[Symbol.asyncIterator]()
  })

  // Launches under way. A launch's scope must not be closed under it (its release would end an
  // instance its spawn then creates): dispose interrupts the launch, which closes the scope
  // once the launch has stopped.
  const launching = new Set<Fiber.RuntimeFiber<RunHandle, unknown>>()

  const dispose = (): Promise<void> => {
    disposed ??= (async () => {
      await Promise.allSettled([...launching].map((fiber) => runtime.runPromise(Fiber.interrupt(fiber))))
      for (const scope of [...open]) void closeScope(scope)
      await Promise.allSettled([...closing.values()])
      await runtime.dispose()
      unwatchExit(onExit)
      unwatchSignals(dispose)
    })()
    return disposed
  }
  watchSignals(dispose)

  return {
    launch: async (options) => {
      if (disposed !== null) throw afterDispose()
      // Made without an await: a dispose that began during one would not have seen this launch,
      // which then ran on a runtime being torn down.
      const scope = Effect.runSync(Scope.make())
      open.add(scope)
      // The instance is named before its provider is called, and the launch's first progress
      // event says the name: from then on an exit while the launch is still under way (a
      // notebook left as its cell launches) ends that instance too (see onExit).
      let early: string | null = null
      const tracked: LaunchOptions =
        // Options the launch will refuse go to it as given, so that it names what is wrong.
        typeof options !== "object" || options === null || (options.onProgress !== undefined && typeof options.onProgress !== "function")
          ? options
          : {
              ...options,
              onProgress: (event) => {
                if (early === null) {
                  early = event.runId
                  const provider = options.provider ?? engine.settings.defaultProvider
                  running.set(event.runId, { provider, ref: { name: event.instance, providerRef: null, region: null } })
                }
                options.onProgress?.(event)
              }
            }
      try {
        const fiber = runtime.runFork(Scope.extend(Api.launch(tracked), scope))
        launching.add(fiber)
        const exit = await runtime.runPromise(Fiber.await(fiber)).finally(() => launching.delete(fiber))
        if (Exit.isFailure(exit)) {
          // Only `dispose` interrupts a launch: the caller is told that, not Effect's
          // InterruptedException (dispose closes the launch's scope, which ends its instance).
          if (disposed !== null && Cause.isInterruptedOnly(exit.cause)) {
            throw new ClientDisposed({ message: "this SkyREPL client was disposed while the launch was under way; its instance was ended" })
          }
          throw Cause.squash(exit.cause)
        }
        const handle = exit.value
        running.set(handle.id, { provider: handle.instance.provider, ref: { name: handle.instance.name, providerRef: null, region: null } })
        const disposeRun = () => closeScope(scope).finally(() => running.delete(handle.id))
        return {
          id: handle.id,
          instance: handle.instance,
          output: iterate(Api.attach(handle.id)),
          result: () => run(handle.result),
          cancel: () => run(handle.cancel),
          dispose: disposeRun,
          [Symbol.asyncDispose]: disposeRun
        }
      } catch (error) {
        await closeScope(scope)
        if (early !== null) running.delete(early)
        throw error
      }
    },
    attach: (runId, options) => iterate(Api.attach(runId, options)),
    cancel: (runId) => run(Api.cancel(runId)),
    scanOrphans: (options) => run(Api.scanOrphans(options)),
    getRun: (runId) => run(Api.getRun(runId)),
    listRuns: (filter) => run(Api.listRuns(filter)),
    listInstances: (filter) => run(Api.listInstances(filter)),
    listAllocations: (filter) => run(Api.listAllocations(filter)),
    dispose,
    [Symbol.asyncDispose]: dispose
  }
}
