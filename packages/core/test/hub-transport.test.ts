import { Effect, Exit, Scope } from "effect"
import { describe, expect, it } from "vitest"
import { createConnection } from "node:net"
import { json, serve } from "../src/hub/transport.ts"

const onBun = typeof Reflect.get(globalThis, "Bun") === "object"

/** Sends `text` on a fresh connection; resolves with what came back and when it closed. */
const hold = (port: number, text: string, limitMs: number) =>
  new Promise<{ readonly received: string; readonly closedAfterMs: number | null }>((resolve) => {
    const started = Date.now()
    let received = ""
    const socket = createConnection({ host: "127.0.0.1", port }, () => socket.write(text))
    const timer = setTimeout(() => {
      socket.destroy()
      resolve({ received, closedAfterMs: null })
    }, limitMs)
    socket.on("data", (data: Buffer) => (received += data.toString("latin1")))
    socket.on("error", () => {})
    socket.on("close", () => {
      clearTimeout(timer)
      resolve({ received, closedAfterMs: Date.now() - started })
    })
  })

// node:http ends such connections by its own time-outs (headersTimeout, requestTimeout).
describe.runIf(onBun)("hub transport on Bun.serve", () => {
  it("closes a connection that went quiet in the middle of a body it was refused for, and keeps an event stream open", async () => {
    const scope = await Effect.runPromise(Scope.make())
    try {
      const listening = await Effect.runPromise(
        serve({
          host: "127.0.0.1",
          port: 0,
          maxBodyBytes: 1024,
          idleTimeoutSeconds: 1,
          // As the hub answers a request with no token: at once, the body unread.
          handle: async (req) => (req.path === "/events" ? { _tag: "events", opened: (sink) => sink.write(": connected\n\n") } : json(401, { error: "unknown token" }))
        }).pipe(Effect.tap((l) => Scope.addFinalizer(scope, l.close)), Scope.extend(scope))
      )
      const [stalled, events] = await Promise.all([
        hold(listening.port, "POST /v1/agent/exit HTTP/1.1\r\nhost: hub\r\ncontent-length: 100\r\n\r\n{", 6_000),
        hold(listening.port, "GET /events HTTP/1.1\r\nhost: hub\r\n\r\n", 6_000)
      ])
      expect(stalled.received).toMatch(/^HTTP\/1\.1 401 /)
      expect(stalled.closedAfterMs).not.toBeNull()
      expect(events.received).toContain(": connected")
      // Still open when the test let it go: no ping for 6 s, well past the 1 s limit (Bun checks every few seconds).
      expect(events.closedAfterMs).toBeNull()
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }, 15_000)
})
