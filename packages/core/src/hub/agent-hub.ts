import { Deferred, Effect, Either, Exit, Runtime, Schema, type Scope } from "effect"
import { decodeJson, sseEvent } from "./http.ts"
import { describeParseError } from "../parse-error.ts"
import { compressForStore, decodeUpload, OUTPUT_ENCODINGS } from "../output-encoding.ts"
import type { OutputStream } from "../domain/run.ts"
import type { HubError } from "../errors.ts"
import {
  AGENT_PROTOCOL_VERSION,
  ExitReport,
  HeartbeatRequest,
  MAX_OUTPUT_BYTES,
  OutputQuery,
  RegisterRequest,
  type RunCommand
} from "./protocol.ts"
import { type EventSink, type HubAnswer, type HubRequest, json, serve } from "./transport.ts"

/** What the engine does with what an agent sends. The hub itself holds no durable state. */
/**
 * A request the session's owner does not take: a run that is not this instance's (404), or one
 * whose exit has been applied, after which no output can belong to it (410).
 */
export interface Refusal {
  readonly refused: 404 | 410
  readonly error: string
}

export const isRefusal = (answer: unknown): answer is Refusal =>
  typeof answer === "object" && answer !== null && "refused" in answer

export interface SessionHandlers {
  /**
   * Stores output; returns the next offset expected on that stream, or `gap` with that offset.
   * `deflated` is the same bytes DEFLATE-compressed, in the zlib or the gzip wrapper, when the
   * agent sent them compressed.
   */
  readonly onOutput: (
    runId: string,
    stream: OutputStream,
    offset: number,
    data: Uint8Array,
    deflated: Uint8Array | undefined
  ) => Effect.Effect<{ readonly next: number; readonly gap: boolean } | Refusal>
  readonly onExit: (report: ExitReport) => Effect.Effect<void | Refusal>
}

export interface AgentSession {
  readonly instanceName: string
  readonly registered: Deferred.Deferred<RegisterRequest>
  /**
   * Whether the agent has registered: before it has, there is no agent to tell anything, and a
   * run can be ended at once (a cancel, a closing scope) instead of asked to end.
   */
  readonly hasRegistered: Effect.Effect<boolean>
  /** Epoch ms of the last request from the agent. */
  readonly lastSeen: () => number
  readonly startRun: (run: RunCommand) => Effect.Effect<void>
  readonly cancelRun: (runId: string) => Effect.Effect<void>
  readonly finishRun: (runId: string) => Effect.Effect<void>
  readonly shutdown: Effect.Effect<void>
}

export interface SessionOptions {
  /**
   * The hub, not the agent, compresses this session's output: the register answer lists no
   * output encoding, so the agent uploads output as written, and the hub compresses what it hands
   * to `onOutput` (compressForStore). The engine asks this for an agent on this machine when this
   * runtime's zlib is the faster (ProviderCapabilities.agentOnHost, RUNTIME_COMPRESSES_FASTER):
   * across no network, the agent's compressing would only add an inflate here.
   */
  readonly compressOutput?: boolean
}

export interface AgentHub {
  /** The URL agents are told to call. */
  readonly url: string
  /** Accepts an agent for `instanceName` with `token` until the scope closes. */
  readonly open: (
    instanceName: string,
    token: string,
    handlers: SessionHandlers,
    options?: SessionOptions
  ) => Effect.Effect<AgentSession, never, Scope.Scope>
}

export interface HubOptions {
  readonly host: string
  readonly port: number
  readonly publicUrl: string | null
  readonly heartbeatIntervalMs: number
  readonly deadmanTimeoutMs: number
  /** Secret other controllers present to ask this one to cancel a run it owns. */
  readonly controlSecret: string
  readonly onControlCancel: (runId: string) => Effect.Effect<string>
}

interface SessionState {
  readonly name: string
  readonly token: Buffer
  readonly handlers: SessionHandlers
  /**
   * Whether the hub compresses uploads that came as written (SessionOptions.compressOutput);
   * the register answer then offers no output encoding.
   */
  readonly compresses: boolean
  /** Output uploads being read or stored (see handleOutput). */
  readonly uploads: Set<HeldUpload>
  /** Uploads refused as a gap for now, waiting for their stream's next store. */
  readonly waiters: Set<StoreWaiter>
  /** Output uploads stored so far: whether any was stored while one waited. */
  stores: number
  /**
   * Where each stream (`runId stream`) is known to be stored up to. An upload being read that
   * starts before it cannot fill a gap (a resent chunk, or a stalled connection's), so nothing
   * waits for it.
   */
  readonly stored: Map<string, number>
  readonly registered: Deferred.Deferred<RegisterRequest>
  lastSeen: number
  /** Runs sent and not finished: resent on every reconnect (the agent ignores repeats). */
  readonly runs: Map<string, RunCommand>
  readonly cancels: Set<string>
  shuttingDown: boolean
  stream: EventSink | null
}

/** An output upload the hub is reading or storing; `done` settles when it has answered. */
interface HeldUpload {
  readonly runId: string
  readonly stream: OutputStream
  readonly offset: number
  readonly done: Promise<void>
}

interface StoreWaiter {
  readonly runId: string
  readonly stream: OutputStream
  readonly wake: () => void
}

/**
 * How long an upload that starts beyond what its stream has stored waits for the upload before
 * it (see handleOutput) before it is refused with a 409: the runtime was seen to take an agent's
 * second request 15 ms before its first.
 */
const GAP_WAIT_MS = 250

/**
 * How long an upload waits for the uploads of its stream ahead of it that the hub is still
 * reading (see handleOutput). A body that arrives slowly holds only its own connection: a
 * stalled one (a half-open connection, a request never finished) must not hold back every
 * upload behind it, which once froze a run's output, and so its end, for as long as it stalled.
 */
const EARLIER_WAIT_MS = 2_000

/** Whether `pending` settles within `ms`. */
const settlesWithin = (pending: Promise<unknown>, ms: number): Promise<boolean> =>
  new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), Math.max(0, ms))
    pending.then(() => {
      clearTimeout(timer)
      resolve(true)
    })
  })

/** Output uploads are the largest requests an agent sends (see MAX_OUTPUT_BYTES). */
const MAX_BODY = MAX_OUTPUT_BYTES

const bearer = (req: HubRequest): string => {
  const header = req.header("authorization") ?? ""
  return header.startsWith("Bearer ") ? header.slice(7) : ""
}

/** A stream ended by a reconnect or a shutdown drops what is written to it (see EventSink). */
const writeEvent = (sink: EventSink, event: string, data: unknown): void => sink.write(sseEvent(event, data))

/**
 * The controller's agent endpoint (docs/agent-protocol.md), on the runtime's own HTTP server
 * (transport.ts); requests are decoded with effect/Schema before anything acts on them.
 */
export const makeAgentHub = (options: HubOptions): Effect.Effect<AgentHub, HubError, Scope.Scope> =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const run = Runtime.runPromise(runtime)
    /**
     * Sessions by a digest of their token: a request finds its session in one look-up rather
     * than comparing its token with every session's (200 instances made every request 200
     * compares). The digest reveals nothing of the token, and the token itself is still
     * compared in constant time with the one found.
     */
    const sessions = new Map<string, SessionState>()
    // node:crypto is taken when a hub starts, not imported: importing it loads the stream
    // modules, which every CLI command would pay for (bench B2), though most start no hub.
    const { createHash, timingSafeEqual } = process.getBuiltinModule("node:crypto")
    const digest = (token: string | Buffer): string => createHash("sha256").update(token).digest("hex")
    const sameSecret = (given: string, expected: Buffer): boolean => {
      const buf = Buffer.from(given)
      return buf.length === expected.length && timingSafeEqual(buf, expected)
    }
    const controlSecret = Buffer.from(options.controlSecret)

    const flushTo = (state: SessionState) => {
      const res = state.stream
      if (res === null) return
      for (const command of state.runs.values()) writeEvent(res, "run", command)
      for (const runId of state.cancels) writeEvent(res, "cancel", { runId })
      if (state.shuttingDown) writeEvent(res, "shutdown", {})
    }

    /** Settles true once `state` stores an upload of that stream, false after `ms`. */
    const nextStored = (state: SessionState, runId: string, stream: OutputStream, ms: number): Promise<boolean> =>
      new Promise((resolve) => {
        const waiter: StoreWaiter = { runId, stream, wake: () => finish(true) }
        const timer = setTimeout(() => finish(false), ms)
        const finish = (stored: boolean) => {
          clearTimeout(timer)
          state.waiters.delete(waiter)
          resolve(stored)
        }
        state.waiters.add(waiter)
      })

    /**
     * An output upload. The agent keeps two of a stream's uploads in flight, on two connections
     * (UPLOADS_IN_FLIGHT), and the runtime can hand the later one over first, even before it has
     * read the earlier one's request. Stored first, the later one would be refused as a gap (409)
     * and sent again, so it waits: for the earlier uploads of its stream that the hub is reading
     * or storing, and, when it still starts beyond what is stored, for the stream's next store,
     * up to GAP_WAIT_MS, before it is refused. Decoding and compressing do not wait.
     */
    const handleOutput = async (state: SessionState, req: HubRequest): Promise<HubAnswer> => {
      const decoded = Schema.decodeUnknownEither(OutputQuery)(Object.fromEntries(req.query))
      if (Either.isLeft(decoded)) return json(400, { error: describeParseError(decoded.left) })
      const { runId, stream, offset, size } = decoded.right
      let done = (): void => {}
      const upload: HeldUpload = { runId, stream, offset, done: new Promise<void>((resolve) => (done = resolve)) }
      const key = `${runId} ${stream}`
      const earlier = () => {
        const storedUpTo = state.stored.get(key) ?? 0
        return Array.from(state.uploads, (other) =>
          other.runId === runId && other.stream === stream && other.offset < offset && other.offset >= storedUpTo
            ? other.done
            : undefined
        ).filter((pending) => pending !== undefined)
      }
      state.uploads.add(upload)
      try {
        const body = await req.body()
        if (body === null) return json(413, { error: "body too large or connection broken" })
        const decodedBody = decodeUpload(req.header("content-encoding"), size, body, MAX_OUTPUT_BYTES)
        if (Either.isLeft(decodedBody)) return json(decodedBody.left.status, { error: decodedBody.left.error })
        const { data } = decodedBody.right
        const deflated = decodedBody.right.deflated ?? (state.compresses ? compressForStore(data) : undefined)
        const store = () => run(state.handlers.onOutput(runId, stream, offset, data, deflated))
        const deadline = Date.now() + GAP_WAIT_MS
        const earlierDeadline = Date.now() + EARLIER_WAIT_MS
        // False once the uploads ahead have had their while: the store then judges this one.
        const awaitEarlier = async (): Promise<boolean> => {
          const pending = earlier()
          return pending.length > 0 && (await settlesWithin(Promise.all(pending), earlierDeadline - Date.now()))
        }
        await awaitEarlier()
        let seen = state.stores
        let result = await store()
        while (!isRefusal(result) && result.gap) {
          if (!(await awaitEarlier())) {
            if (state.stores === seen && !(await nextStored(state, runId, stream, deadline - Date.now()))) break
          }
          seen = state.stores
          result = await store()
        }
        if (isRefusal(result)) return json(result.refused, { error: result.error })
        if (!result.gap) {
          state.stores += 1
          state.stored.set(key, Math.max(state.stored.get(key) ?? 0, result.next))
          for (const waiter of state.waiters) if (waiter.runId === runId && waiter.stream === stream) waiter.wake()
        }
        return json(result.gap ? 409 : 200, { next: result.next })
      } finally {
        state.uploads.delete(upload)
        done()
      }
    }

    const handleAgent = async (req: HubRequest): Promise<HubAnswer> => {
      const { path } = req
      const instance = req.header("x-skyrepl-instance")
      const token = bearer(req)
      // The token alone identifies the session; the instance header only makes logs readable.
      const found = sessions.get(digest(token))
      const state = found !== undefined && sameSecret(token, found.token) ? found : undefined
      if (state === undefined) return json(401, { error: "unknown token", instance: instance ?? null })
      if (req.header("x-skyrepl-protocol") !== String(AGENT_PROTOCOL_VERSION)) {
        return json(409, { error: "protocol mismatch", protocol: AGENT_PROTOCOL_VERSION })
      }
      state.lastSeen = Date.now()

      if (req.method === "GET" && path === "/v1/agent/events") {
        const current = state
        return {
          _tag: "events",
          opened: (sink) => {
            sink.write(": connected\n\n")
            if (current.stream !== null && current.stream !== sink) current.stream.end()
            current.stream = sink
            const ping = setInterval(() => sink.write(": ping\n\n"), options.heartbeatIntervalMs)
            sink.onClose(() => {
              clearInterval(ping)
              if (current.stream === sink) current.stream = null
            })
            flushTo(current)
          }
        }
      }

      if (req.method === "POST" && path === "/v1/agent/output") return handleOutput(state, req)

      const body = await req.body()
      if (body === null) return json(413, { error: "body too large or connection broken" })

      if (req.method === "POST" && path === "/v1/agent/register") {
        const decoded = decodeJson(RegisterRequest, body)
        if (Either.isLeft(decoded)) return json(400, { error: decoded.left })
        if (decoded.right.protocol !== AGENT_PROTOCOL_VERSION) {
          return json(409, { error: "protocol mismatch", protocol: AGENT_PROTOCOL_VERSION })
        }
        if (decoded.right.instance !== state.name) return json(403, { error: "token belongs to another instance" })
        // Completed in place rather than through a fiber: the launch waiting on it resumes sooner.
        Deferred.unsafeDone(state.registered, Exit.succeed(decoded.right))
        return json(200, {
          protocol: AGENT_PROTOCOL_VERSION,
          heartbeatIntervalMs: options.heartbeatIntervalMs,
          deadmanTimeoutMs: options.deadmanTimeoutMs,
          maxOutputBytes: MAX_OUTPUT_BYTES,
          outputEncodings: state.compresses ? [] : OUTPUT_ENCODINGS
        })
      }
      if (req.method === "POST" && path === "/v1/agent/exit") {
        const decoded = decodeJson(ExitReport, body)
        if (Either.isLeft(decoded)) return json(400, { error: decoded.left })
        const answer = await run(state.handlers.onExit(decoded.right))
        if (isRefusal(answer)) return json(answer.refused, { error: answer.error })
        state.runs.delete(decoded.right.runId)
        state.cancels.delete(decoded.right.runId)
        return json(200, {})
      }
      if (req.method === "POST" && path === "/v1/agent/heartbeat") {
        const decoded = decodeJson(HeartbeatRequest, body)
        if (Either.isLeft(decoded)) return json(400, { error: decoded.left })
        return json(200, {})
      }
      return json(404, { error: `no route ${req.method} ${path}` })
    }

    const handleControl = async (req: HubRequest): Promise<HubAnswer> => {
      const { path } = req
      if (!sameSecret(bearer(req), controlSecret)) return json(401, { error: "bad controller secret" })
      const match = /^\/v1\/control\/runs\/([0-9a-z]+)\/cancel$/.exec(path)
      if (req.method !== "POST" || match === null) return json(404, { error: "no such control route" })
      const runId = match[1] as string
      const state = await run(options.onControlCancel(runId))
      return json(200, { runId, state })
    }

    const listening = yield* serve({
      host: options.host,
      port: options.port,
      maxBodyBytes: MAX_BODY,
      handle: (req) => (req.path.startsWith("/v1/control/") ? handleControl(req) : handleAgent(req))
    })
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        for (const s of sessions.values()) s.stream?.end()
        return listening.close
      })
    )

    // An IPv6 address goes in brackets in a URL (RFC 3986): http://[::1]:8080.
    const host = listening.address.includes(":") ? `[${listening.address}]` : listening.address
    const url = options.publicUrl ?? `http://${host}:${listening.port}`

    const open: AgentHub["open"] = (instanceName, token, handlers, sessionOptions = {}) =>
      Effect.gen(function* () {
        const registered = yield* Deferred.make<RegisterRequest>()
        const state: SessionState = {
          name: instanceName,
          token: Buffer.from(token),
          handlers,
          compresses: sessionOptions.compressOutput === true,
          uploads: new Set(),
          waiters: new Set(),
          stores: 0,
          stored: new Map(),
          registered,
          lastSeen: Date.now(),
          runs: new Map(),
          cancels: new Set(),
          shuttingDown: false,
          stream: null
        }
        const key = digest(state.token)
        sessions.set(key, state)
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            state.stream?.end()
            if (sessions.get(key) === state) sessions.delete(key)
          })
        )
        const session: AgentSession = {
          instanceName,
          registered,
          hasRegistered: Deferred.isDone(registered),
          lastSeen: () => state.lastSeen,
          startRun: (command) =>
            Effect.sync(() => {
              state.runs.set(command.runId, command)
              if (state.stream !== null) writeEvent(state.stream, "run", command)
            }),
          cancelRun: (runId) =>
            Effect.sync(() => {
              if (!state.runs.has(runId)) return
              state.cancels.add(runId)
              if (state.stream !== null) writeEvent(state.stream, "cancel", { runId })
            }),
          finishRun: (runId) =>
            Effect.sync(() => {
              state.runs.delete(runId)
              state.cancels.delete(runId)
            }),
          shutdown: Effect.sync(() => {
            state.shuttingDown = true
            if (state.stream !== null) writeEvent(state.stream, "shutdown", {})
          })
        }
        return session
      })

    return { url, open } satisfies AgentHub
  })
