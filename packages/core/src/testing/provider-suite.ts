import { describe, expect, layer } from "@effect/vitest"
import { Context, Data, Deferred, Duration, Effect, Either, Exit, FiberId, Layer, Schema, type Scope } from "effect"
import { randomBytes } from "node:crypto"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo, Socket } from "node:net"
import { agentScriptPath } from "../agent-script.ts"
import { decodeJson, readBody, sendJson, sseEvent } from "../hub/http.ts"
import type { InvalidSpec } from "../errors.ts"
import { formatInstanceName, isInstanceName, newControlId, newId } from "../naming.ts"
import { describeParseError } from "../parse-error.ts"
import {
  Isolation,
  type ObservedState,
  Provider,
  PROVIDER_SPEC_VERSION,
  type Bootstrap,
  type InstanceRef,
  type ProviderService
} from "../provider.ts"

// ---------------------------------------------------------------------------------------------
// A fake controller: just enough of docs/agent-protocol.md for an agent to register and stay
// quiet, written from the document rather than from the engine's hub so the two cannot drift
// together unnoticed.

const PROTOCOL = 1

/** The register body, decoded at the edge like any agent message. */
export const AgentRegistration = Schema.Struct({
  protocol: Schema.Number,
  instance: Schema.String,
  hostname: Schema.String,
  pid: Schema.Number,
  agentVersion: Schema.String,
  python: Schema.String
})
export type AgentRegistration = typeof AgentRegistration.Type

/** One accepted registration, with the token the agent presented. */
export interface Registration extends AgentRegistration {
  readonly token: string
  readonly at: number
}

const ExitBody = Schema.Struct({
  runId: Schema.String,
  exitCode: Schema.NullOr(Schema.Number),
  signal: Schema.NullOr(Schema.String),
  reason: Schema.String
})
export type AgentExit = typeof ExitBody.Type

const OutputQuery = Schema.Struct({
  runId: Schema.String.pipe(Schema.minLength(1)),
  stream: Schema.Literal("stdout", "stderr"),
  offset: Schema.NumberFromString.pipe(Schema.int(), Schema.nonNegative())
})

export class FakeControllerError extends Data.TaggedError("FakeControllerError")<{ readonly message: string }> {}

export interface FakeControllerOptions {
  /** Told to agents at registration; pings on the event stream come this often. Default 1 s. */
  readonly heartbeatIntervalMs?: number
  /** Told to agents at registration. Default 30 s: a test process killed hard leaks for no longer. */
  readonly deadmanTimeoutMs?: number
}

export interface FakeController {
  readonly url: string
  readonly heartbeatIntervalMs: number
  readonly deadmanTimeoutMs: number
  /** Accepts an agent for `instance` presenting `token`; any other token gets `401`. */
  readonly expect: (instance: string, token: string) => Effect.Effect<void>
  /** Waits for `instance` to register with its expected token. */
  readonly registration: (
    instance: string,
    timeout: Duration.DurationInput
  ) => Effect.Effect<Registration, FakeControllerError>
  /** Requests the controller refused (unknown token, wrong instance), for failure messages. */
  readonly rejections: Effect.Effect<ReadonlyArray<string>>
  /** Queues an event for `instance`; it is replayed on every reconnect, as the protocol allows. */
  readonly send: (instance: string, event: "run" | "cancel" | "shutdown", data: unknown) => Effect.Effect<void>
  /** Output received so far for a run's stream. */
  readonly output: (runId: string, stream: "stdout" | "stderr") => Effect.Effect<Buffer>
  /** Waits for a run's exit report. */
  readonly exit: (runId: string, timeout: Duration.DurationInput) => Effect.Effect<AgentExit, FakeControllerError>
  /** Bootstrap for a new instance: a fresh token, already expected. */
  readonly bootstrap: (instance: string, agentScript?: string) => Effect.Effect<Bootstrap>
}

const MAX_BODY = 1024 * 1024


/** Starts the fake controller on 127.0.0.1 (a free port) for the life of the scope. */
export const makeFakeController = (
  options: FakeControllerOptions = {}
): Effect.Effect<FakeController, FakeControllerError, Scope.Scope> =>
  Effect.gen(function* () {
    const heartbeatIntervalMs = options.heartbeatIntervalMs ?? 1_000
    const deadmanTimeoutMs = options.deadmanTimeoutMs ?? 30_000
    const tokens = new Map<string, string>()
    const registered = new Map<string, Deferred.Deferred<Registration>>()
    const rejected: Array<string> = []
    const events = new Map<string, Array<string>>()
    const streams = new Map<string, Set<ServerResponse>>()
    const outputs = new Map<string, Buffer>()
    const exits = new Map<string, Deferred.Deferred<AgentExit>>()
    const sockets = new Set<Socket>()

    const deferredFor = <A>(map: Map<string, Deferred.Deferred<A>>, key: string): Deferred.Deferred<A> => {
      const existing = map.get(key)
      if (existing !== undefined) return existing
      const created = Deferred.unsafeMake<A>(FiberId.none)
      map.set(key, created)
      return created
    }

    const instanceOf = (req: IncomingMessage): { readonly instance: string; readonly token: string } | null => {
      const header = req.headers.authorization ?? ""
      const token = header.startsWith("Bearer ") ? header.slice(7) : ""
      const instance = tokens.get(token)
      return instance === undefined ? null : { instance, token }
    }

    const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
      const url = new URL(req.url ?? "/", "http://controller")
      const who = instanceOf(req)
      if (who === null) {
        rejected.push(`${req.method ?? "?"} ${url.pathname}: unknown token`)
        await readBody(req, MAX_BODY)
        return sendJson(res, 401, { error: "unknown token" })
      }
      const route = `${req.method ?? ""} ${url.pathname}`
      if (route === "GET /v1/agent/events") {
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" })
        res.write(": ping\n\n")
        for (const event of events.get(who.instance) ?? []) res.write(event)
        const open = streams.get(who.instance) ?? new Set<ServerResponse>()
        streams.set(who.instance, open)
        open.add(res)
        const ping = setInterval(() => res.write(": ping\n\n"), heartbeatIntervalMs)
        res.on("close", () => {
          clearInterval(ping)
          open.delete(res)
        })
        return
      }
      const body = await readBody(req, MAX_BODY)
      if (body === null) return sendJson(res, 413, { error: "body too large" })
      switch (route) {
        case "POST /v1/agent/register": {
          if (req.headers["x-skyrepl-protocol"] !== String(PROTOCOL)) {
            return sendJson(res, 409, { protocol: PROTOCOL })
          }
          const decoded = decodeJson(AgentRegistration, body)
          if (Either.isLeft(decoded)) return sendJson(res, 400, { error: decoded.left })
          if (decoded.right.instance !== who.instance) {
            rejected.push(`register: token of ${who.instance} presented by ${decoded.right.instance}`)
            return sendJson(res, 401, { error: "token belongs to another instance" })
          }
          Deferred.unsafeDone(
            deferredFor(registered, who.instance),
            Exit.succeed({ ...decoded.right, token: who.token, at: Date.now() })
          )
          return sendJson(res, 200, { protocol: PROTOCOL, heartbeatIntervalMs, deadmanTimeoutMs })
        }
        case "POST /v1/agent/heartbeat":
          return sendJson(res, 200, {})
        case "POST /v1/agent/output": {
          const query = Schema.decodeUnknownEither(OutputQuery)(Object.fromEntries(url.searchParams))
          if (Either.isLeft(query)) return sendJson(res, 400, { error: describeParseError(query.left) })
          const key = `${query.right.runId}/${query.right.stream}`
          const have = outputs.get(key) ?? Buffer.alloc(0)
          if (query.right.offset > have.length) return sendJson(res, 409, { next: have.length })
          const fresh = body.subarray(have.length - query.right.offset)
          const next = Buffer.concat([have, fresh])
          outputs.set(key, next)
          return sendJson(res, 200, { next: next.length })
        }
        case "POST /v1/agent/exit": {
          const decoded = decodeJson(ExitBody, body)
          if (Either.isLeft(decoded)) return sendJson(res, 400, { error: decoded.left })
          Deferred.unsafeDone(deferredFor(exits, decoded.right.runId), Exit.succeed(decoded.right))
          return sendJson(res, 200, {})
        }
        default:
          return sendJson(res, 404, { error: `no route ${route}` })
      }
    }

    const server = createServer((req, res) => {
      handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) sendJson(res, 500, { error: String(error) })
        else res.destroy()
      })
    })
    server.on("connection", (socket: Socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
    })

    const port = yield* Effect.acquireRelease(
      Effect.async<number, FakeControllerError>((resume) => {
        server.once("error", (error) => resume(Effect.fail(new FakeControllerError({ message: String(error) }))))
        server.listen(0, "127.0.0.1", () => {
          const address: AddressInfo | string | null = server.address()
          resume(
            typeof address === "object" && address !== null
              ? Effect.succeed(address.port)
              : Effect.fail(new FakeControllerError({ message: `unexpected listen address ${String(address)}` }))
          )
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          // Event streams never end on their own; without this, close would wait for them.
          for (const socket of sockets) socket.destroy()
          server.close(() => resume(Effect.void))
        })
    )
    const url = `http://127.0.0.1:${port}`

    const expectAgent = (instance: string, token: string) =>
      Effect.sync(() => {
        tokens.set(token, instance)
      })

    const controller: FakeController = {
      url,
      heartbeatIntervalMs,
      deadmanTimeoutMs,
      expect: expectAgent,
      registration: (instance, timeout) =>
        Deferred.await(deferredFor(registered, instance)).pipe(
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () =>
              new FakeControllerError({
                message: `${instance} did not register within ${Duration.format(Duration.decode(timeout))}` +
                  (rejected.length > 0 ? `; refused: ${rejected.join("; ")}` : "")
              })
          })
        ),
      rejections: Effect.sync(() => [...rejected]),
      send: (instance, event, data) =>
        Effect.sync(() => {
          const text = sseEvent(event, data)
          const queued = events.get(instance) ?? []
          queued.push(text)
          events.set(instance, queued)
          for (const res of streams.get(instance) ?? []) res.write(text)
        }),
      output: (runId, stream) => Effect.sync(() => outputs.get(`${runId}/${stream}`) ?? Buffer.alloc(0)),
      exit: (runId, timeout) =>
        Deferred.await(deferredFor(exits, runId)).pipe(
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () => new FakeControllerError({ message: `no exit report for run ${runId}` })
          })
        ),
      bootstrap: (instance, agentScript = agentScriptPath) =>
        Effect.gen(function* () {
          const token = randomBytes(24).toString("hex")
          yield* expectAgent(instance, token)
          return { agentUrl: url, token, heartbeatIntervalMs, deadmanTimeoutMs, agentScript }
        })
    }
    return controller
  })

export class FakeAgentController extends Context.Tag("@skyrepl/core/testing/FakeAgentController")<
  FakeAgentController,
  FakeController
>() {
  static readonly layer = (options: FakeControllerOptions = {}): Layer.Layer<FakeAgentController, FakeControllerError> =>
    Layer.scoped(FakeAgentController, makeFakeController(options))
}

// ---------------------------------------------------------------------------------------------
// The contract suite

export interface ProviderSuiteOptions {
  /** A fresh provider layer; built once for the suite. */
  readonly layer: () => Layer.Layer<Provider, unknown>
  /** Specs `parseSpec` must accept; their canonical forms must parse back to themselves. */
  readonly validSpecs: ReadonlyArray<string>
  /** Specs `parseSpec` must refuse with `InvalidSpec`. */
  readonly invalidSpecs: ReadonlyArray<string>
  /** The spec instances are spawned with. Default: the first valid spec. */
  readonly spawnSpec?: string
  /** Written into every instance name the suite creates. Default: a fresh one. */
  readonly controlId?: string
  /**
   * Creates resources on the backend that are not SkyREPL's, for the life of the scope, and
   * returns the names under which the backend shows them; `list` must report none of them.
   */
  readonly foreignResources?: () => Effect.Effect<ReadonlyArray<string>, unknown, Scope.Scope>
  /**
   * Whether the backend really runs the bootstrap, so the agent must register with the
   * instance's name and token. Default true; false only for an emulator that stores the
   * bootstrap without running anything (moto keeps user-data but boots nothing).
   */
  readonly bootstrapRuns?: boolean
  /** Default: the repository's agent. */
  readonly agentScript?: string
  /** How long an instance may take to boot (agent registered, `describe` running) or to go. Default 30 s. */
  readonly bootTimeout?: Duration.DurationInput
  /** Per test, in ms. Default 60 s. */
  readonly timeout?: number
  readonly controller?: FakeControllerOptions
}

const listed = (provider: ProviderService) => Effect.map(provider.list(), (all) => new Map(all.map((i) => [i.name, i])))

/**
 * Polls `describe` until it reports `state`. A provider may legitimately answer `pending` right
 * after spawn or `stopping` right after terminate; the engine polls the same way.
 */
const awaitState = (
  provider: ProviderService,
  ref: InstanceRef,
  state: ObservedState,
  timeout: Duration.DurationInput
) =>
  Effect.gen(function* () {
    const deadline = Date.now() + Duration.toMillis(Duration.decode(timeout))
    const seen: Array<ObservedState> = []
    for (;;) {
      const now = yield* provider.describe(ref)
      if (now === state) return
      if (seen[seen.length - 1] !== now) seen.push(now)
      if (Date.now() > deadline) {
        return yield* Effect.die(new Error(`${ref.name} did not become ${state}; describe said ${seen.join(" → ")}`))
      }
      yield* Effect.sleep(Duration.millis(100))
    }
  })

/**
 * The provider contract. Every provider package runs it against its own backend (the real
 * machine, moto, an emulator), so what the engine relies on is proven for each of them.
 */
export const providerSuite = (name: string, options: ProviderSuiteOptions): void => {
  const controlId = options.controlId ?? newControlId()
  const bootTimeout = options.bootTimeout ?? Duration.seconds(30)
  const timeout = options.timeout ?? 60_000
  const agentScript = options.agentScript ?? agentScriptPath
  const spawnSpec = options.spawnSpec ?? options.validSpecs[0]
  const bootstrapRuns = options.bootstrapRuns ?? true

  const newName = () => formatInstanceName({ controlId, manifestId: newId(), instanceId: newId() })

  /** Spawns an instance that the test's scope terminates, whatever happens. */
  const spawnScoped = (provider: ProviderService, controller: FakeController, instance: string) =>
    Effect.gen(function* () {
      const spec = yield* provider.parseSpec(spawnSpec)
      const bootstrap = yield* controller.bootstrap(instance, agentScript)
      const spawned = yield* Effect.acquireRelease(provider.spawn(instance, spec, bootstrap), () =>
        Effect.orDie(provider.terminate({ name: instance, providerRef: null, region: null }))
      )
      const ref = { name: instance, providerRef: spawned.providerRef, region: spawned.region }
      return { bootstrap, ref }
    })

  /** The agent registered with the right name and token, and the provider says running. */
  const awaitBooted = (provider: ProviderService, controller: FakeController, ref: InstanceRef, bootstrap: Bootstrap) =>
    Effect.gen(function* () {
      if (bootstrapRuns) {
        const registration = yield* controller.registration(ref.name, bootTimeout)
        expect(registration.instance).toBe(ref.name)
        expect(registration.token).toBe(bootstrap.token)
        expect(registration.protocol).toBe(PROTOCOL)
      }
      yield* awaitState(provider, ref, "running", bootTimeout)
    })

  const suiteLayer = Layer.merge(options.layer(), FakeAgentController.layer(options.controller))

  describe(name, () => {
    layer(suiteLayer, { excludeTestServices: true, timeout: Duration.seconds(60) })((it) => {
      it.effect("declares well-formed capabilities", () =>
        Effect.gen(function* () {
          const provider = yield* Provider
          expect(provider.id).toMatch(/^[a-z][a-z0-9-]*$/)
          expect(provider.specVersion).toBe(PROVIDER_SPEC_VERSION)
          expect(Schema.is(Isolation)(provider.capabilities.isolation)).toBe(true)
          for (const flag of ["spot", "snapshots", "regions", "warmPool", "ssh"] as const) {
            expect(typeof provider.capabilities[flag]).toBe("boolean")
          }
          // Optional: absent means the agent is not on the controller's machine.
          expect(["boolean", "undefined"]).toContain(typeof provider.capabilities.agentOnHost)
        })
      )

      it.effect("parseSpec accepts the valid specs, and canonical forms parse back to themselves", () =>
        Effect.gen(function* () {
          const provider = yield* Provider
          expect(options.validSpecs.length).toBeGreaterThan(0)
          for (const spec of options.validSpecs) {
            const parsed = yield* provider.parseSpec(spec)
            expect(parsed.provider).toBe(provider.id)
            const again = yield* provider.parseSpec(parsed.canonical)
            expect(again).toEqual(parsed)
          }
        })
      )

      it.effect("parseSpec refuses the invalid specs with InvalidSpec naming the valid forms", () =>
        Effect.gen(function* () {
          const provider = yield* Provider
          for (const spec of options.invalidSpecs) {
            const error: InvalidSpec = yield* Effect.flip(provider.parseSpec(spec))
            expect(error._tag).toBe("InvalidSpec")
            expect(error.provider).toBe(provider.id)
            expect(error.validForms.length).toBeGreaterThan(0)
            expect(error.message.length).toBeGreaterThan(0)
          }
        })
      )

      it.scoped(
        "spawn starts the agent with the instance's name and token; terminate ends it, idempotently",
        () =>
          Effect.gen(function* () {
            const provider = yield* Provider
            const controller = yield* FakeAgentController
            const instance = newName()
            const before = Date.now()
            const { bootstrap, ref } = yield* spawnScoped(provider, controller, instance)
            expect(ref.providerRef.length).toBeGreaterThan(0)
            yield* awaitBooted(provider, controller, ref, bootstrap)

            const entry = (yield* listed(provider)).get(instance)
            expect(entry).toBeDefined()
            expect(entry?.providerRef).toBe(ref.providerRef)
            expect(entry?.region).toBe(ref.region)
            if (entry !== undefined && entry.createdAt !== null) {
              expect(Math.abs(entry.createdAt - before)).toBeLessThan(10 * 60_000)
            }

            yield* provider.terminate(ref)
            yield* awaitState(provider, ref, "gone", bootTimeout)
            expect((yield* listed(provider)).has(instance)).toBe(false)
            yield* provider.terminate(ref)
            yield* provider.terminate({ name: instance, providerRef: null, region: ref.region })
            expect(yield* provider.describe(ref)).toBe("gone")
          }),
        timeout
      )

      it.effect("an instance that never existed is gone, and terminating it succeeds", () =>
        Effect.gen(function* () {
          const provider = yield* Provider
          // Named an hour ago: a provider whose listings lag its launches may take a young name
          // it cannot see for one not visible yet, and say so rather than "gone".
          const anHourAgo = Date.now() - 3_600_000
          const name = formatInstanceName({ controlId, manifestId: newId(anHourAgo), instanceId: newId(anHourAgo) })
          const ref: InstanceRef = { name, providerRef: null, region: null }
          expect(yield* provider.describe(ref)).toBe("gone")
          yield* provider.terminate(ref)
          expect((yield* listed(provider)).has(ref.name)).toBe(false)
        })
      )

      it.scoped(
        "list reports only SkyREPL instances",
        () =>
          Effect.gen(function* () {
            const provider = yield* Provider
            const foreign = options.foreignResources === undefined ? [] : yield* options.foreignResources()
            const all = yield* provider.list()
            for (const entry of all) {
              expect(isInstanceName(entry.name)).toBe(true)
              expect(entry.providerRef.length).toBeGreaterThan(0)
            }
            const names = new Set(all.map((entry) => entry.name))
            for (const other of foreign) expect(names.has(other)).toBe(false)
          }),
        timeout
      )

      it.scoped(
        "two instances spawned at once are independent",
        () =>
          Effect.gen(function* () {
            const provider = yield* Provider
            const controller = yield* FakeAgentController
            const [first, second] = yield* Effect.all([newName(), newName()].map((instance) => spawnScoped(provider, controller, instance)), {
              concurrency: "unbounded"
            })
            if (first === undefined || second === undefined) return expect.unreachable()
            yield* Effect.all(
              [first, second].map(({ bootstrap, ref }) => awaitBooted(provider, controller, ref, bootstrap)),
              { concurrency: "unbounded" }
            )
            expect(first.ref.providerRef).not.toBe(second.ref.providerRef)

            yield* provider.terminate(first.ref)
            yield* awaitState(provider, first.ref, "gone", bootTimeout)
            expect(yield* provider.describe(second.ref)).toBe("running")
            const remaining = yield* listed(provider)
            expect(remaining.has(first.ref.name)).toBe(false)
            expect(remaining.get(second.ref.name)?.providerRef).toBe(second.ref.providerRef)

            yield* provider.terminate(second.ref)
            yield* awaitState(provider, second.ref, "gone", bootTimeout)
          }),
        timeout
      )

      it.effect("leaves no instance of this suite behind", () =>
        Effect.gen(function* () {
          const provider = yield* Provider
          const left = (yield* provider.list()).filter((entry) => entry.name.startsWith(`repl-${controlId}-`))
          expect(left.map((entry) => entry.name)).toEqual([])
        })
      )
    })
  })
}
