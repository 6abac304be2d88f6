import { Cause, Chunk, ConfigError, Effect, Either, Exit, Fiber, type Layer, ManagedRuntime, Option, Scope, Stream } from "effect"
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
  /**
   * All output from the first byte, live until the run ends. Each iteration starts over, and
   * reads the store only while a `next()` is waiting: an iterator left without `return()`
   * costs nothing more. The client's `dispose` ends the run, so an iteration still going then
   * gets the rest of its output and ends (`done`) rather than failing: a `for await` loop
   * around a Ctrl-C ends as the run did. One begun after the dispose rejects with
   * `ClientDisposed`, as every later call does.
   */
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
  /**
   * A run's output, as `ClientRun.output` is (reading only while a `next()` waits). Following
   * a run that goes on when this client is disposed (another process's), an iteration is cut
   * off and rejects with `ClientDisposed`: it is not told `done` as if the run had ended. A run
   * this client launched, or `follow: false`, ends (`done`) as `output` does.
   */
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

/** What dispose does with an output reader still open (see `iterate` in `makeClient`). */
interface OutputReader {
  /** Whether its stream ends once the runs the client launched have (their output, or `follow: false`). */
  readonly endsHere: boolean
  /**
   * Reads ahead what is left of an ended stream, up to `DRAIN_BYTES` and until `deadline`,
   * for later `next()` calls (`drain`), or cuts the reader off; then closes its stream.
   */
  readonly settle: (drain: boolean, deadline: number) => Promise<void>
}

/**
 * How much of an ended run's output dispose reads ahead for each reader left open, and for how
 * long: a reader that waited for output as the run was ended is a page or two short of the end,
 * while one far behind (a slow consumer of a long log) is not kept in memory whole.
 */
const DRAIN_BYTES = 8 * 1024 * 1024
const DRAIN_MILLIS = 5_000

/** Whether attach options say not to follow (given in plain JavaScript, they can be anything). */
const followsNot = (options: unknown): boolean =>
  typeof options === "object" && options !== null && "follow" in options && options.follow === false

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

  // Output readers that hold a stream open (a listener of their run's changes), for dispose.
  const readers = new Set<OutputReader>()
  // Runs this client launched: dispose ends them, so their readers can be given the rest.
  const launched = new Set<string>()

  /**
   * An output stream as an async iterator that reads only while a `next()` asks: a page of
   * the store per pull, handed out chunk by chunk. Effect's `toAsyncIterable` ran the stream
   * in a fiber of its own that read on ahead of the caller: an iterator dropped without
   * `return()` (a loop body that threw into a catch outside the loop, a `Promise.race` with a
   * timeout) kept reading the store, once a second for a run hosted here and every 10 ms for
   * another process's, until the run's next output or its end, and then waited for good. And
   * one reading as the client was disposed failed with the store's "database connection is not
   * open", or with ClientDisposed, as the timing fell.
   * `endsHere`: the stream ends once this client's dispose has ended the runs it launched.
   */
  const iterate = <E2>(stream: Stream.Stream<OutputChunk, E2, SkyRepl>, endsHere: () => boolean): AsyncIterable<OutputChunk> => ({
    [Symbol.asyncIterator]: () => {
      const buffered: Array<OutputChunk> = []
      // What follows the buffered chunks: more to pull, the end, an error, or output this
      // client can no longer read (it was disposed first).
      let end: { readonly _tag: "more" | "done" | "cut" } | { readonly _tag: "failed"; readonly error: unknown } = { _tag: "more" }
      let scope: Scope.CloseableScope | null = null
      let pull: Effect.Effect<Chunk.Chunk<OutputChunk>, Option.Option<E2>, SkyRepl> | null = null
      let pulling: Fiber.RuntimeFiber<Chunk.Chunk<OutputChunk>, E | Option.Option<E2>> | null = null
      // No pull is begun any more: the caller called return() ("done"), or dispose cut off a
      // reader of a run that goes on elsewhere ("cut").
      let stop: "done" | "cut" | null = null
      // next(), return() and dispose's settle run one after another, in the order called.
      let queue: Promise<unknown> = Promise.resolve()
      const enqueue = <A>(step: () => Promise<A>): Promise<A> => {
        const done = queue.then(step)
        queue = done.catch(() => undefined)
        return done
      }

      const release = async (): Promise<void> => {
        readers.delete(reader)
        const open = scope
        scope = null
        if (open !== null) await runtime.runPromise(Scope.close(open, Exit.void))
      }

      const pullOnce = async (): Promise<void> => {
        const opened = scope
        if (opened === null || stop !== null) {
          end = { _tag: stop ?? "cut" }
          return release()
        }
        // The first pull opens the stream in the reader's scope, and keeps its pull for the next.
        const opening = Scope.extend(Stream.toPull(stream), opened).pipe(
          Effect.tap((made) => {
            pull = made
          }),
          Effect.flatten
        )
        const fiber = runtime.runFork(Effect.suspend(() => pull ?? opening))
        pulling = fiber
        const exit = await Effect.runPromise(Fiber.await(fiber))
        pulling = null
        if (Exit.isSuccess(exit)) {
          buffered.push(...Chunk.toReadonlyArray(exit.value))
          return
        }
        if (Cause.isInterruptedOnly(exit.cause)) end = { _tag: stop ?? "cut" }
        else {
          const failure = Cause.failureOrCause(exit.cause)
          // A failure that is not an Option is the engine's own (its layer built already).
          end = Either.isRight(failure)
            ? { _tag: "failed", error: Cause.squash(failure.right) }
            : !Option.isOption(failure.left)
              ? { _tag: "failed", error: failure.left }
              : Option.match(failure.left, { onNone: () => ({ _tag: "done" }), onSome: (error) => ({ _tag: "failed", error }) })
        }
        await release()
      }

      const take = async (): Promise<IteratorResult<OutputChunk>> => {
        while (buffered.length === 0 && end._tag === "more") await pullOnce()
        const chunk = buffered.shift()
        if (chunk !== undefined) return { done: false, value: chunk }
        if (end._tag === "failed") {
          const { error } = end
          end = { _tag: "done" }
          throw thrown(error)
        }
        if (end._tag === "cut") {
          throw new ClientDisposed({
            message: "this SkyREPL client was disposed before the run's output ended; the rest is in the store (attach from another client, `from` where this one stopped)"
          })
        }
        return { done: true, value: undefined }
      }

      const reader: OutputReader = {
        endsHere: endsHere(),
        settle: (drain, deadline) => {
          if (!drain) {
            stop ??= "cut"
            if (pulling !== null) Fiber.interruptFork(pulling).pipe(Effect.runFork)
          }
          // A pull past the deadline (a store that does not answer) is cut off.
          const late = setTimeout(() => {
            if (pulling !== null) Fiber.interruptFork(pulling).pipe(Effect.runFork)
          }, Math.max(0, deadline - Date.now()))
          return enqueue(async () => {
            let bytes = buffered.reduce((sum, chunk) => sum + chunk.data.length, 0)
            while (drain && end._tag === "more" && bytes < DRAIN_BYTES && Date.now() < deadline) {
              const from = buffered.length
              await pullOnce()
              bytes += buffered.slice(from).reduce((sum, chunk) => sum + chunk.data.length, 0)
            }
            if (end._tag === "more") end = { _tag: "cut" }
            await release()
          }).finally(() => clearTimeout(late))
        }
      }

      return {
        next: () => {
          // Opened as next() is called, not when its turn comes: a dispose begun meanwhile
          // must find this reader to settle it. One asked after the dispose began is too late.
          if (scope === null && end._tag === "more" && disposed === null) {
            scope = Effect.runSync(Scope.make())
            readers.add(reader)
          }
          return enqueue(take)
        },
        return: () => {
          stop ??= "done"
          if (pulling !== null) Fiber.interruptFork(pulling).pipe(Effect.runFork)
          return enqueue(async () => {
            buffered.length = 0
            if (end._tag === "more") end = { _tag: "done" }
            await release()
            return { done: true, value: undefined }
          })
        }
      }
    }
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
      // The runs this client launched have ended: their readers are given what is left of
      // their output (a loop around a Ctrl-C ends as the run did); a reader of a run that goes
      // on elsewhere is cut off, and says so.
      const deadline = Date.now() + DRAIN_MILLIS
      await Promise.allSettled([...readers].map((reader) => reader.settle(reader.endsHere, deadline)))
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
        launched.add(handle.id)
        running.set(handle.id, { provider: handle.instance.provider, ref: { name: handle.instance.name, providerRef: null, region: null } })
        const disposeRun = () => closeScope(scope).finally(() => running.delete(handle.id))
        return {
          id: handle.id,
          instance: handle.instance,
          output: iterate(Api.attach(handle.id), () => true),
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
    attach: (runId, options) => iterate(Api.attach(runId, options), () => launched.has(runId) || followsNot(options)),
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
