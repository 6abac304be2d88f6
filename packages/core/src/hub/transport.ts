import { Effect } from "effect"
import type { ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { describeCause } from "../cause-message.ts"
import { HubError } from "../errors.ts"
import { readBody, sendJson } from "./http.ts"

/**
 * The HTTP server under the agent endpoint: `Bun.serve` on Bun, `node:http` on Node. The hub's
 * logic sees one request shape and answers with one answer shape, whichever serves it.
 *
 * Two servers because of start-up cost: in Bun, loading node:http and listening takes about
 * 18 ms of a cold process, Bun.serve about 3 ms, and every `repl run` starts a hub. On Node,
 * node:http is the native server.
 */

/** A request as the hub sees it. */
export interface HubRequest {
  readonly method: string
  readonly path: string
  readonly query: URLSearchParams
  readonly header: (name: string) => string | undefined
  /** The body, or null when it is larger than the server's limit or the connection broke. */
  readonly body: () => Promise<Uint8Array | null>
}

/** An open event stream. Writes after it ended are dropped. */
export interface EventSink {
  readonly write: (text: string) => void
  readonly end: () => void
  /** Called once, when the stream ends from either side. */
  readonly onClose: (listener: () => void) => void
}

export type HubAnswer =
  | { readonly _tag: "json"; readonly status: number; readonly body: unknown }
  | { readonly _tag: "events"; readonly opened: (sink: EventSink) => void }

export const json = (status: number, body: unknown): HubAnswer => ({ _tag: "json", status, body })

export interface Listening {
  readonly address: string
  readonly port: number
  /**
   * Stops accepting, ends the event streams, lets requests already being answered finish (for
   * up to `closeGrace`), then ends every connection still open.
   */
  readonly close: Effect.Effect<void>
}

export interface ServeOptions {
  readonly host: string
  readonly port: number
  readonly maxBodyBytes: number
  /**
   * Seconds a connection may send and be sent nothing before Bun.serve closes it (event streams
   * excepted); IDLE_TIMEOUT_SECONDS unless a test asks for less.
   */
  readonly idleTimeoutSeconds?: number
  readonly handle: (request: HubRequest) => Promise<HubAnswer>
}

/**
 * Without a limit, a connection that sent a request's head and then nothing (a body never
 * finished, after a 401 too, so with no token) stayed open for as long as its peer liked: a
 * hub listening on a public address (AWS) let anyone take every descriptor the process may
 * open, and the agents' own requests then went unanswered. Every handler answers within
 * seconds (the longest wait, a cancel by another controller, is about 5 s); node:http ends such
 * a connection by its own time-outs (headersTimeout, requestTimeout).
 */
const IDLE_TIMEOUT_SECONDS = 60

const sseHeaders = { "content-type": "text/event-stream", "cache-control": "no-cache" } as const

/**
 * How long closing waits for answers already on their way. An engine closes its endpoint as its
 * process ends, often right after its last run did; a request answered at that moment (another
 * process's cancel, which the run's end has just completed, or an agent's exit report) must
 * still reach its caller, or the caller takes a live owner for a gone one.
 */
const closeGrace = 2_000

const within = (work: Promise<unknown>, ms: number): Promise<void> =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms)
    const done = () => {
      clearTimeout(timer)
      resolve()
    }
    work.then(done, done)
  })

/** The event streams a server has open, ended together when it closes. */
const openStreams = () => {
  const sinks = new Set<EventSink>()
  return {
    add: (sink: EventSink) => {
      sinks.add(sink)
      sink.onClose(() => sinks.delete(sink))
      return sink
    },
    endAll: () => {
      for (const sink of [...sinks]) sink.end()
    }
  }
}

/**
 * Names where it tried to listen: the runtime's own words do not (Bun says "ENOENT: no such file
 * or directory" for a host name that does not resolve), and the address is what to change.
 */
const failedToListen = (options: ServeOptions) => (cause: unknown): HubError =>
  new HubError({
    message: `agent endpoint: cannot listen on ${options.host.includes(":") ? `[${options.host}]` : options.host}:${options.port}: ${describeCause(cause)}`,
    cause
  })

// ---------------------------------------------------------------------------------------------
// Bun.serve, reached through globalThis: the core compiles without Bun's types, so only the part
// used here is declared, and its presence is checked before use.

interface BunServer {
  readonly port: number
  readonly hostname: string
  /** Sets one request's idle time-out in seconds (0: none). */
  timeout(request: Request, seconds: number): void
  stop(closeActiveConnections?: boolean): unknown
  unref(): unknown
}

interface BunServeOptions {
  readonly hostname: string
  readonly port: number
  /** Seconds; 0 disables it. */
  readonly idleTimeout: number
  readonly maxRequestBodySize: number
  readonly fetch: (request: Request, server: BunServer) => Promise<Response>
  readonly error: (error: Error) => Response
}

type BunServe = (options: BunServeOptions) => BunServer

const bunServe = (): BunServe | null => {
  const bun: unknown = Reflect.get(globalThis, "Bun")
  if (typeof bun !== "object" || bun === null) return null
  const serve: unknown = Reflect.get(bun, "serve")
  if (typeof serve !== "function") return null
  return (options) => Reflect.apply(serve, bun, [options])
}

/**
 * What a handler that failed says to the agent: the first line of its message. Effect's
 * failures print their whole cause and stack, which would end up in the agent's log.
 */
const oneLine = (error: unknown): string => (error instanceof Error ? error.message : String(error)).split("\n")[0] ?? "internal error"

const jsonResponse = (status: number, body: unknown): Response =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } })

const encoder = new TextEncoder()

const eventResponse = (request: Request, opened: (sink: EventSink) => void, streams: ReturnType<typeof openStreams>): Response => {
  const listeners: Array<() => void> = []
  let ended = false
  let controller: ReadableStreamDefaultController<Uint8Array> | null = null
  const finish = () => {
    if (ended) return
    ended = true
    for (const listener of listeners.splice(0)) listener()
  }
  const sink: EventSink = {
    write: (text) => {
      if (!ended && controller !== null) controller.enqueue(encoder.encode(text))
    },
    end: () => {
      if (ended) return
      controller?.close()
      finish()
    },
    onClose: (listener) => {
      if (ended) listener()
      else listeners.push(listener)
    }
  }
  request.signal.addEventListener("abort", finish, { once: true })
  const body = new ReadableStream<Uint8Array>({
    start: (c) => {
      controller = c
      opened(streams.add(sink))
    },
    cancel: finish
  })
  return new Response(body, { status: 200, headers: sseHeaders })
}

const serveBun = (serve: BunServe, options: ServeOptions): Effect.Effect<Listening, HubError> =>
  Effect.try({
    try: () => {
      const streams = openStreams()
      const server = serve({
        hostname: options.host,
        port: options.port,
        idleTimeout: options.idleTimeoutSeconds ?? IDLE_TIMEOUT_SECONDS,
        maxRequestBodySize: options.maxBodyBytes,
        fetch: async (request, server) => {
          const url = new URL(request.url)
          const answer = await options.handle({
            method: request.method,
            path: url.pathname,
            query: url.searchParams,
            header: (name) => request.headers.get(name) ?? undefined,
            body: () => request.arrayBuffer().then((b) => new Uint8Array(b), () => null)
          })
          if (answer._tag === "json") return jsonResponse(answer.status, answer.body)
          // An event stream is quiet between pings, which can be minutes apart: it has no limit.
          server.timeout(request, 0)
          return eventResponse(request, answer.opened, streams)
        },
        error: (error) => jsonResponse(500, { error: oneLine(error) })
      })
      // Agents keep connections open; they must not hold the process open at exit.
      server.unref()
      // With the event streams ended, a graceful stop resolves once the requests in flight have
      // been answered.
      const close = Effect.promise(async () => {
        streams.endAll()
        await within(Promise.resolve(server.stop(false)), closeGrace)
        await server.stop(true)
      })
      return { address: server.hostname, port: server.port, close }
    },
    catch: failedToListen(options)
  })

// ---------------------------------------------------------------------------------------------
// node:http

/**
 * On Node a write after end is an 'error' event that nothing listens for, which ends the
 * process: a stream ended by a reconnect or a shutdown is written to no more.
 */
const nodeSink = (res: ServerResponse): EventSink => ({
  write: (text) => {
    if (!res.writableEnded && !res.destroyed) res.write(text)
  },
  end: () => {
    if (!res.writableEnded) res.end()
  },
  onClose: (listener) => {
    if (res.destroyed) listener()
    else res.once("close", listener)
  }
})

const serveNode = (options: ServeOptions): Effect.Effect<Listening, HubError> =>
  Effect.gen(function* () {
    // Loaded here, not at the top: an engine that never launches never starts a hub.
    const { createServer } = yield* Effect.promise(() => import("node:http"))
    const streams = openStreams()
    let closing = false
    const server = createServer((req, res) => {
      // Once closing, a connection whose answer has gone out is closed rather than kept alive,
      // so the server's close does not wait for keep-alive time-outs.
      res.once("finish", () => {
        if (closing) setImmediate(() => server.closeIdleConnections())
      })
      // The request target is the client's to choose, before the token is checked: one that no
      // URL can be made of ("//[") is answered, not thrown out of this listener, which on Node
      // ends the process, and with it every run this controller owns.
      let url: URL
      try {
        url = new URL(req.url ?? "/", "http://hub")
      } catch {
        return sendJson(res, 400, { error: "malformed request target" })
      }
      const header = (name: string) => {
        const value = req.headers[name.toLowerCase()]
        return Array.isArray(value) ? value[0] : value
      }
      options
        .handle({
          method: req.method ?? "GET",
          path: url.pathname,
          query: url.searchParams,
          header,
          body: () => readBody(req, options.maxBodyBytes)
        })
        .then(
          (answer) => {
            if (answer._tag === "json") return sendJson(res, answer.status, answer.body)
            res.writeHead(200, { ...sseHeaders, connection: "keep-alive" })
            answer.opened(streams.add(nodeSink(res)))
          },
          (error: unknown) => {
            if (!res.headersSent) sendJson(res, 500, { error: oneLine(error) })
            else res.end()
          }
        )
    })
    // Agents keep one connection per stream; idle sockets must not hold the process open at exit.
    server.keepAliveTimeout = 30_000
    const address = yield* Effect.async<AddressInfo, HubError>((resume) => {
      server.once("error", (error) => resume(Effect.fail(failedToListen(options)(error))))
      // Node throws at once for arguments it refuses (a port out of range), where Bun's serve
      // throws into serveBun's catch: the same HubError either way, never a defect.
      try {
        server.listen(options.port, options.host, () => {
          const bound = server.address()
          if (bound === null || typeof bound === "string") resume(Effect.fail(failedToListen(options)(new Error("no TCP address"))))
          else resume(Effect.succeed(bound))
        })
      } catch (error) {
        resume(Effect.fail(failedToListen(options)(error)))
      }
    })
    server.unref()
    // server.close stops accepting, closes idle keep-alive connections, and calls back once the
    // requests in flight have been answered (the event streams are ended first).
    const close = Effect.promise(async () => {
      closing = true
      streams.endAll()
      await within(new Promise<void>((resolve) => server.close(() => resolve())), closeGrace)
      server.closeAllConnections()
    })
    return { address: address.address, port: address.port, close }
  })

/** Listens on `host:port` (port 0: one the system picks) with the runtime's own server. */
export const serve = (options: ServeOptions): Effect.Effect<Listening, HubError> => {
  const bun = bunServe()
  return bun === null ? serveNode(options) : serveBun(bun, options)
}
