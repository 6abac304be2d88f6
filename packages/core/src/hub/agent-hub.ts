import { Deferred, Effect, Either, Runtime, Schema, type Scope } from "effect"
import { timingSafeEqual } from "node:crypto"
import type { IncomingMessage, Server, ServerResponse } from "node:http"
import { decodeJson, readBody, sendJson as send, sseEvent } from "./http.ts"
import type { AddressInfo } from "node:net"
import type { OutputStream } from "../domain/run.ts"
import { HubError } from "../errors.ts"
import {
  AGENT_PROTOCOL_VERSION,
  ExitReport,
  HeartbeatRequest,
  MAX_OUTPUT_BYTES,
  OutputQuery,
  RegisterRequest,
  type RunCommand
} from "./protocol.ts"

/** What the engine does with what an agent sends. The hub itself holds no durable state. */
export interface SessionHandlers {
  /** Stores output; returns the next offset expected on that stream, or `gap` with that offset. */
  readonly onOutput: (
    runId: string,
    stream: OutputStream,
    offset: number,
    data: Uint8Array
  ) => Effect.Effect<{ readonly next: number; readonly gap: boolean }>
  readonly onExit: (report: ExitReport) => Effect.Effect<void>
}

export interface AgentSession {
  readonly instanceName: string
  readonly registered: Deferred.Deferred<RegisterRequest>
  /** Epoch ms of the last request from the agent. */
  readonly lastSeen: () => number
  readonly startRun: (run: RunCommand) => Effect.Effect<void>
  readonly cancelRun: (runId: string) => Effect.Effect<void>
  readonly finishRun: (runId: string) => Effect.Effect<void>
  readonly shutdown: Effect.Effect<void>
}

export interface AgentHub {
  /** The URL agents are told to call. */
  readonly url: string
  /** Accepts an agent for `instanceName` with `token` until the scope closes. */
  readonly open: (
    instanceName: string,
    token: string,
    handlers: SessionHandlers
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
  readonly registered: Deferred.Deferred<RegisterRequest>
  lastSeen: number
  /** Runs sent and not finished: resent on every reconnect (the agent ignores repeats). */
  readonly runs: Map<string, RunCommand>
  readonly cancels: Set<string>
  shuttingDown: boolean
  stream: ServerResponse | null
}

/** Output uploads are the largest requests an agent sends (see MAX_OUTPUT_BYTES). */
const MAX_BODY = MAX_OUTPUT_BYTES

const sameSecret = (given: string, expected: Buffer): boolean => {
  const buf = Buffer.from(given)
  return buf.length === expected.length && timingSafeEqual(buf, expected)
}

const bearer = (req: IncomingMessage): string => {
  const header = req.headers.authorization ?? ""
  return header.startsWith("Bearer ") ? header.slice(7) : ""
}

/**
 * Writes to an event stream unless it has ended: a stream is ended (reconnect, shutdown) before
 * its 'close' event clears it from the session, and on Node a write after end is an 'error'
 * event that nothing listens for, which ends the process.
 */
const writeTo = (res: ServerResponse, text: string): void => {
  if (!res.writableEnded && !res.destroyed) res.write(text)
}

const writeEvent = (res: ServerResponse, event: string, data: unknown): void => writeTo(res, sseEvent(event, data))

/**
 * The controller's agent endpoint (docs/agent-protocol.md). Plain `node:http` because it runs
 * unchanged on Node and Bun; requests are decoded with effect/Schema before anything acts on
 * them. On Bun, loading node:http and listening costs about 18 ms of a cold process (Bun.serve:
 * about 3 ms), which is why the engine starts the hub only when it first launches.
 */
export const makeAgentHub = (options: HubOptions): Effect.Effect<AgentHub, HubError, Scope.Scope> =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const run = Runtime.runPromise(runtime)
    const sessions = new Map<string, SessionState>()
    const controlSecret = Buffer.from(options.controlSecret)

    const flushTo = (state: SessionState) => {
      const res = state.stream
      if (res === null) return
      for (const command of state.runs.values()) writeEvent(res, "run", command)
      for (const runId of state.cancels) writeEvent(res, "cancel", { runId })
      if (state.shuttingDown) writeEvent(res, "shutdown", {})
    }

    const handleAgent = async (req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams) => {
      const instance = req.headers["x-skyrepl-instance"]
      const token = bearer(req)
      // The token alone identifies the session; the instance header only makes logs readable.
      let state: SessionState | undefined
      for (const s of sessions.values()) {
        if (sameSecret(token, s.token)) state = s
      }
      if (state === undefined) return send(res, 401, { error: "unknown token", instance: instance ?? null })
      if (req.headers["x-skyrepl-protocol"] !== String(AGENT_PROTOCOL_VERSION)) {
        return send(res, 409, { error: "protocol mismatch", protocol: AGENT_PROTOCOL_VERSION })
      }
      state.lastSeen = Date.now()

      if (req.method === "GET" && path === "/v1/agent/events") {
        res.writeHead(200, {
          "content-type": "text/event-stream",
          "cache-control": "no-cache",
          connection: "keep-alive"
        })
        res.write(": connected\n\n")
        if (state.stream !== null && state.stream !== res) state.stream.end()
        state.stream = res
        const current = state
        const ping = setInterval(() => writeTo(res, ": ping\n\n"), options.heartbeatIntervalMs)
        res.on("close", () => {
          clearInterval(ping)
          if (current.stream === res) current.stream = null
        })
        flushTo(state)
        return
      }

      const body = await readBody(req, MAX_BODY)
      if (body === null) return send(res, 413, { error: "body too large or connection broken" })

      if (req.method === "POST" && path === "/v1/agent/register") {
        const decoded = decodeJson(RegisterRequest, body)
        if (Either.isLeft(decoded)) return send(res, 400, { error: decoded.left })
        if (decoded.right.protocol !== AGENT_PROTOCOL_VERSION) {
          return send(res, 409, { error: "protocol mismatch", protocol: AGENT_PROTOCOL_VERSION })
        }
        if (decoded.right.instance !== state.name) return send(res, 403, { error: "token belongs to another instance" })
        await run(Deferred.succeed(state.registered, decoded.right))
        return send(res, 200, {
          protocol: AGENT_PROTOCOL_VERSION,
          heartbeatIntervalMs: options.heartbeatIntervalMs,
          deadmanTimeoutMs: options.deadmanTimeoutMs,
          maxOutputBytes: MAX_OUTPUT_BYTES
        })
      }
      if (req.method === "POST" && path === "/v1/agent/output") {
        const decoded = Schema.decodeUnknownEither(OutputQuery)(Object.fromEntries(query))
        if (Either.isLeft(decoded)) return send(res, 400, { error: decoded.left.message })
        const { runId, stream, offset } = decoded.right
        const result = await run(state.handlers.onOutput(runId, stream, offset, new Uint8Array(body.buffer, body.byteOffset, body.length)))
        return send(res, result.gap ? 409 : 200, { next: result.next })
      }
      if (req.method === "POST" && path === "/v1/agent/exit") {
        const decoded = decodeJson(ExitReport, body)
        if (Either.isLeft(decoded)) return send(res, 400, { error: decoded.left })
        await run(state.handlers.onExit(decoded.right))
        state.runs.delete(decoded.right.runId)
        state.cancels.delete(decoded.right.runId)
        return send(res, 200, {})
      }
      if (req.method === "POST" && path === "/v1/agent/heartbeat") {
        const decoded = decodeJson(HeartbeatRequest, body)
        if (Either.isLeft(decoded)) return send(res, 400, { error: decoded.left })
        return send(res, 200, {})
      }
      return send(res, 404, { error: `no route ${req.method} ${path}` })
    }

    const handleControl = async (req: IncomingMessage, res: ServerResponse, path: string) => {
      if (!sameSecret(bearer(req), controlSecret)) return send(res, 401, { error: "bad controller secret" })
      const match = /^\/v1\/control\/runs\/([0-9a-z]+)\/cancel$/.exec(path)
      if (req.method !== "POST" || match === null) return send(res, 404, { error: "no such control route" })
      const runId = match[1] as string
      const state = await run(options.onControlCancel(runId))
      return send(res, 200, { runId, state })
    }

    // Loaded here, not at the top: node:http is one of the costlier modules to load, and an
    // engine that never launches (a `repl run list`) never starts a hub.
    const { createServer } = yield* Effect.promise(() => import("node:http"))
    const server: Server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://hub")
      const handler = url.pathname.startsWith("/v1/control/")
        ? handleControl(req, res, url.pathname)
        : handleAgent(req, res, url.pathname, url.searchParams)
      handler.catch((error: unknown) => {
        if (!res.headersSent) send(res, 500, { error: String(error) })
        else res.end()
      })
    })
    // Agents keep one connection per stream; idle sockets must not hold the process open at exit.
    server.keepAliveTimeout = 30_000

    const address = yield* Effect.async<AddressInfo, HubError>((resume) => {
      server.once("error", (error) => resume(Effect.fail(new HubError({ message: `agent endpoint: ${error.message}`, cause: error }))))
      server.listen(options.port, options.host, () => resume(Effect.succeed(server.address() as AddressInfo)))
    })
    server.unref()
    yield* Effect.addFinalizer(() =>
      Effect.async<void>((resume) => {
        for (const s of sessions.values()) s.stream?.end()
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
    )

    const url = options.publicUrl ?? `http://${address.address}:${address.port}`

    const open: AgentHub["open"] = (instanceName, token, handlers) =>
      Effect.gen(function* () {
        const registered = yield* Deferred.make<RegisterRequest>()
        const state: SessionState = {
          name: instanceName,
          token: Buffer.from(token),
          handlers,
          registered,
          lastSeen: Date.now(),
          runs: new Map(),
          cancels: new Set(),
          shuttingDown: false,
          stream: null
        }
        sessions.set(instanceName, state)
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            state.stream?.end()
            sessions.delete(instanceName)
          })
        )
        const session: AgentSession = {
          instanceName,
          registered,
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
