import { Deferred, Effect, Exit, Scope } from "effect"
import { describe, expect, it } from "vitest"
import { randomBytes } from "node:crypto"
import { createConnection } from "node:net"
import { deflateSync, gunzipSync, gzipSync } from "node:zlib"
import { makeAgentHub, type AgentHub, type AgentSession, type SessionOptions } from "../src/hub/agent-hub.ts"
import { AGENT_PROTOCOL_VERSION, MAX_OUTPUT_BYTES } from "../src/hub/protocol.ts"

// The hub runs on Bun.serve under Bun and on node:http under Node; this suite runs on both
// (npm test runs every suite on each runtime), so both servers answer the same protocol.

const runtime = typeof Reflect.get(globalThis, "Bun") === "object" ? "Bun.serve" : "node:http"

interface Fixture {
  readonly hub: AgentHub
  readonly session: AgentSession
  readonly outputs: Array<{ runId: string; stream: string; offset: number; data: Uint8Array; deflated: Uint8Array | undefined }>
  readonly scope: Scope.CloseableScope
}

const TOKEN = "t0ken-for-the-hub-test"
const NAME = "repl-abcdefgh-mwrlfv7nn50z8k-mwrlfv7nurar77"

/** A hub with one open session; `onControlCancel` answers another controller's cancel. */
const start = async (
  onControlCancel = (runId: string) => Effect.succeed(`cancelled ${runId}`),
  sessionOptions: SessionOptions = {}
): Promise<Fixture> => {
  const scope = await Effect.runPromise(Scope.make())
  const outputs: Fixture["outputs"] = []
  const ends = new Map<string, number>()
  const { hub, session } = await Effect.runPromise(
    Effect.gen(function* () {
      const hub = yield* makeAgentHub({
        host: "127.0.0.1",
        port: 0,
        publicUrl: null,
        heartbeatIntervalMs: 60_000,
        deadmanTimeoutMs: 120_000,
        controlSecret: "control-secret",
        onControlCancel
      })
      const session = yield* hub.open(NAME, TOKEN, {
        // As a store does: a chunk that starts beyond what its stream holds is a gap.
        onOutput: (runId, stream, offset, data, deflated) =>
          Effect.sync(() => {
            const end = ends.get(`${runId}/${stream}`) ?? 0
            if (offset > end) return { next: end, gap: true }
            outputs.push({ runId, stream, offset, data, deflated })
            ends.set(`${runId}/${stream}`, Math.max(end, offset + data.length))
            return { next: offset + data.length, gap: false }
          }),
        onExit: () => Effect.void
      }, sessionOptions)
      return { hub, session }
    }).pipe(Scope.extend(scope))
  )
  return { hub, session, outputs, scope }
}

const stop = (f: Fixture) => Effect.runPromise(Scope.close(f.scope, Exit.void))

const agentHeaders = (token = TOKEN, protocol = String(AGENT_PROTOCOL_VERSION)) => ({
  authorization: `Bearer ${token}`,
  "x-skyrepl-protocol": protocol,
  "x-skyrepl-instance": NAME
})

const register = (f: Fixture, headers = agentHeaders()) =>
  fetch(`${f.hub.url}/v1/agent/register`, {
    method: "POST",
    headers: { ...headers, "content-type": "application/json" },
    body: JSON.stringify({ protocol: AGENT_PROTOCOL_VERSION, instance: NAME, hostname: "h", pid: 1, agentVersion: "1.0.0", python: "3.11.2" })
  })

/** Reads an event stream until `until` holds for what has arrived; returns the text. */
/** Posts run r1's stdout at `offset` with a Content-Encoding and, when given, the inflated size. */
const compressedPoster = (f: Fixture) => (offset: number, body: Uint8Array, encoding: string, size?: number) =>
  fetch(`${f.hub.url}/v1/agent/output?runId=r1&stream=stdout&offset=${offset}${size === undefined ? "" : `&size=${size}`}`, {
    method: "POST",
    headers: { ...agentHeaders(), "content-type": "application/octet-stream", "content-encoding": encoding },
    body
  })

/** Runs `body` against a hub with one open session (see `start`), and closes it afterwards. */
const withHub = async (
  body: (f: Fixture, post: ReturnType<typeof compressedPoster>) => Promise<void>,
  sessionOptions: SessionOptions = {}
): Promise<void> => {
  const f = await start(undefined, sessionOptions)
  try {
    await body(f, compressedPoster(f))
  } finally {
    await stop(f)
  }
}

const readUntil = async (body: ReadableStream<Uint8Array>, until: (text: string) => boolean): Promise<{ text: string; ended: boolean }> => {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let text = ""
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return { text, ended: true }
    text += decoder.decode(value)
    if (until(text)) {
      reader.releaseLock()
      return { text, ended: false }
    }
  }
}

describe(`agent hub on ${runtime}`, () => {
  it("refuses a wrong token (401) and another protocol (409), and registers the right agent", async () => {
    const f = await start()
    try {
      expect((await register(f, agentHeaders("wrong-token"))).status).toBe(401)
      expect((await register(f, agentHeaders(TOKEN, "99"))).status).toBe(409)
      expect(Effect.runSync(Deferred.isDone(f.session.registered))).toBe(false)
      const answer = await register(f)
      expect(answer.status).toBe(200)
      expect(await answer.json()).toMatchObject({ protocol: AGENT_PROTOCOL_VERSION, maxOutputBytes: MAX_OUTPUT_BYTES, outputEncodings: ["gzip", "deflate"] })
      expect(Effect.runSync(Deferred.isDone(f.session.registered))).toBe(true)
      const malformed = await fetch(`${f.hub.url}/v1/agent/register`, { method: "POST", headers: agentHeaders(), body: "{not json" })
      expect(malformed.status).toBe(400)
    } finally {
      await stop(f)
    }
  })

  it("passes output bytes through exactly, and refuses a body over the limit", async () => {
    const f = await start()
    try {
      const bytes = new Uint8Array(300_000).map((_, i) => i % 251)
      const ok = await fetch(`${f.hub.url}/v1/agent/output?runId=r1&stream=stdout&offset=0`, {
        method: "POST",
        headers: { ...agentHeaders(), "content-type": "application/octet-stream" },
        body: bytes
      })
      expect(ok.status).toBe(200)
      expect(await ok.json()).toEqual({ next: bytes.length })
      expect(f.outputs).toHaveLength(1)
      expect(f.outputs[0]?.offset).toBe(0)
      expect(Buffer.from(f.outputs[0]?.data ?? []).equals(Buffer.from(bytes))).toBe(true)
      // Where the agent compresses (the default), what came as written stays so.
      expect(f.outputs[0]?.deflated).toBeUndefined()
      const tooLarge = await fetch(`${f.hub.url}/v1/agent/output?runId=r1&stream=stdout&offset=${bytes.length}`, {
        method: "POST",
        headers: { ...agentHeaders(), "content-type": "application/octet-stream" },
        body: new Uint8Array(MAX_OUTPUT_BYTES + 1)
      }).then((r) => r.status, () => 413)
      expect(tooLarge).toBe(413)
      expect(f.outputs).toHaveLength(1)
    } finally {
      await stop(f)
    }
  })

  it("inflates a deflated upload once, hands over both forms, and refuses bad or oversized ones", async () => {
    await withHub(async (f, post) => {
      const text = new TextEncoder().encode("a line of output\n".repeat(20_000))
      const packed = deflateSync(text)
      const ok = await post(0, packed, "deflate", text.length)
      expect(ok.status).toBe(200)
      expect(await ok.json()).toEqual({ next: text.length })
      expect(f.outputs).toHaveLength(1)
      expect(Buffer.from(f.outputs[0]?.data ?? []).equals(Buffer.from(text))).toBe(true)
      expect(Buffer.from(f.outputs[0]?.deflated ?? []).equals(packed)).toBe(true)
      // A size over the largest upload is refused before anything is inflated; a body that
      // inflates past the size it named, or short of it, or not at all, is refused too.
      const huge = deflateSync(new Uint8Array(MAX_OUTPUT_BYTES + 1))
      expect((await post(text.length, huge, "deflate", MAX_OUTPUT_BYTES + 1)).status).toBe(413)
      expect((await post(text.length, huge, "deflate", 100)).status).toBe(400)
      expect((await post(text.length, packed, "deflate", text.length + 1)).status).toBe(400)
      expect((await post(text.length, packed, "deflate")).status).toBe(400)
      expect((await post(text.length, new Uint8Array([1, 2, 3, 4]), "deflate", 10)).status).toBe(400)
      expect((await post(text.length, gzipSync(text), "br", text.length)).status).toBe(415)
      // Each encoding is its own wrapper: gzip data named deflate is refused, and the reverse.
      expect((await post(text.length, gzipSync(text), "deflate", text.length)).status).toBe(400)
      expect((await post(text.length, packed, "gzip", text.length)).status).toBe(400)
      expect(f.outputs).toHaveLength(1)
      const plain = await post(text.length, new Uint8Array([104, 105]), "identity")
      expect(await plain.json()).toEqual({ next: text.length + 2 })
      expect(f.outputs[1]?.deflated).toBeUndefined()
    })
  })

  it("inflates a gzip upload (also named x-gzip) and hands over both forms", async () => {
    await withHub(async (f, post) => {
      const text = new TextEncoder().encode("a line of output\n".repeat(20_000))
      const packed = gzipSync(text)
      const ok = await post(0, packed, "gzip", text.length)
      expect(await ok.json()).toEqual({ next: text.length })
      expect(Buffer.from(f.outputs[0]?.data ?? []).equals(Buffer.from(text))).toBe(true)
      expect(Buffer.from(f.outputs[0]?.deflated ?? []).equals(packed)).toBe(true)
      const more = gzipSync(text.subarray(0, 1000))
      expect(await (await post(text.length, more, "X-Gzip", 1000)).json()).toEqual({ next: text.length + 1000 })
      expect((await post(text.length + 1000, packed, "gzip", text.length - 1)).status).toBe(400)
      expect((await post(text.length + 1000, packed, "gzip")).status).toBe(400)
      expect(f.outputs).toHaveLength(2)
    })
  })

  it("compressing for the agent, offers it no encoding and compresses what is worth it for the store", async () => {
    await withHub(async (f, post) => {
      expect(await (await register(f)).json()).toMatchObject({ outputEncodings: [] })
      const large = new TextEncoder().encode("a line of output\n".repeat(20_000))
      const small = large.subarray(0, 8192)
      const random = randomBytes(200_000)
      let offset = 0
      for (const bytes of [large, small, random, large.subarray(0, 4095)]) {
        const answer = await post(offset, bytes, "identity")
        offset += bytes.length
        expect(await answer.json()).toEqual({ next: offset })
      }
      const [first, second, third, fourth] = f.outputs
      // Larger than the 64 KiB sample, and the sample alone: each handed over as written and
      // as gzip data of exactly those bytes.
      for (const [output, bytes] of [[first, large], [second, small]] as const) {
        expect(Buffer.from(output?.data ?? []).equals(Buffer.from(bytes))).toBe(true)
        const deflated = Buffer.from(output?.deflated ?? [])
        expect(deflated.subarray(0, 2).toString("hex")).toBe("1f8b")
        expect(gunzipSync(deflated).equals(Buffer.from(bytes))).toBe(true)
        expect(deflated.length * 10).toBeLessThan(bytes.length)
      }
      // Random bytes do not shrink, and under 4 KiB is not worth it: both kept as written.
      expect(Buffer.from(third?.data ?? []).equals(random)).toBe(true)
      expect(third?.deflated).toBeUndefined()
      expect(fourth?.data.length).toBe(4095)
      expect(fourth?.deflated).toBeUndefined()
      // An agent that compresses anyway (an older one) is still taken, its bytes as they came.
      const packed = gzipSync(large)
      expect(await (await post(offset, packed, "gzip", large.length)).json()).toEqual({ next: offset + large.length })
      expect(Buffer.from(f.outputs[4]?.deflated ?? []).equals(packed)).toBe(true)
    }, { compressOutput: true })
  })

  it("stores an upload handed over before the one ahead of it after that one, and refuses a true gap", async () => {
    await withHub(async (f, post) => {
      const bytes = new TextEncoder().encode("0123456789")
      // The second upload arrives first: it waits for the first instead of being refused.
      const second = post(5, bytes.subarray(5), "identity")
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect(f.outputs).toHaveLength(0)
      expect(await (await post(0, bytes.subarray(0, 5), "identity")).json()).toEqual({ next: 5 })
      const answer = await second
      expect(answer.status).toBe(200)
      expect(await answer.json()).toEqual({ next: 10 })
      expect(f.outputs.map((o) => o.offset)).toEqual([0, 5])
      // Nothing is on its way before offset 20: after waiting its while, the upload is a gap.
      const started = Date.now()
      const gap = await post(20, bytes, "identity")
      expect(gap.status).toBe(409)
      expect(await gap.json()).toEqual({ next: 10 })
      expect(Date.now() - started).toBeGreaterThanOrEqual(200)
      expect(f.outputs).toHaveLength(2)
    })
  })

  it("an upload stalled ahead of the others holds them back for a bounded while, and not at all once its bytes are stored", async () => {
    await withHub(async (f, post) => {
      const bytes = new TextEncoder().encode("0123456789")
      expect(await (await post(0, bytes, "identity")).json()).toEqual({ next: 10 })
      // A request for offset 10 whose body never comes (a half-open connection, or a hostile one).
      const { hostname, port } = new URL(f.hub.url)
      const stalled = createConnection({ host: hostname, port: Number(port) })
      await new Promise<void>((resolve) => stalled.once("connect", () => resolve()))
      const head = Object.entries({ ...agentHeaders(), "content-type": "application/octet-stream", "content-length": "100", host: `${hostname}:${port}` })
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join("")
      stalled.write(`POST /v1/agent/output?runId=r1&stream=stdout&offset=10 HTTP/1.1\r\n${head}\r\nx`)
      try {
        await new Promise((resolve) => setTimeout(resolve, 100))
        // Behind it: waits its while for the stalled one, then is a gap to be sent again.
        let started = Date.now()
        const behind = await post(20, bytes, "identity")
        expect([behind.status, await behind.json()]).toEqual([409, { next: 10 }])
        expect(Date.now() - started).toBeLessThan(5_000)
        // The same bytes sent again go in at once; after them, the stalled request is behind
        // what is stored, and nothing waits for it.
        started = Date.now()
        expect(await (await post(10, bytes, "identity")).json()).toEqual({ next: 20 })
        expect(await (await post(20, bytes, "identity")).json()).toEqual({ next: 30 })
        expect(Date.now() - started).toBeLessThan(1_000)
        expect(f.outputs.map((o) => o.offset)).toEqual([0, 10, 20])
      } finally {
        stalled.destroy()
      }
    })
  }, 20_000)

  it("answers a body it cannot decode with 400: JSON nested past the stack, an exit status no process can have, a refusal that is not text", async () => {
    await withHub(async (f) => {
      const send = (path: string, body: string) =>
        fetch(`${f.hub.url}${path}`, { method: "POST", headers: { ...agentHeaders(), "content-type": "application/json" }, body })
      const nested = await send("/v1/agent/heartbeat", `{"runs":${"[".repeat(100_000)}${"]".repeat(100_000)}}`)
      expect([nested.status, await nested.json()]).toEqual([400, { error: "body is JSON nested too deeply" }])
      for (const exitCode of [256, -1]) {
        const exit = await send("/v1/agent/exit", JSON.stringify({ runId: "r1", exitCode, signal: null, reason: "exited", stdoutBytes: 0, stderrBytes: 0 }))
        expect(exit.status).toBe(400)
      }
      const refused = await send("/v1/agent/exit", JSON.stringify({ runId: "r1", exitCode: 127, signal: null, reason: "exited", stdoutBytes: 0, stderrBytes: 0, refused: 42 }))
      expect(refused.status).toBe(400)
      // And goes on serving.
      expect((await send("/v1/agent/heartbeat", JSON.stringify({ runs: [] }))).status).toBe(200)
    })
  })

  it("answers a request target no URL can be made of, and goes on serving", async () => {
    await withHub(async (f) => {
      const { hostname, port } = new URL(f.hub.url)
      // Raw, as no client would send it: "//[" reads as an authority with a broken host.
      const raw = (target: string) =>
        new Promise<string>((resolve) => {
          const socket = createConnection({ host: hostname, port: Number(port) }, () =>
            socket.write(`GET ${target} HTTP/1.1\r\nhost: ${hostname}:${port}\r\nconnection: close\r\n\r\n`)
          )
          let text = ""
          socket.setTimeout(5_000, () => socket.destroy())
          socket.on("data", (data: Buffer) => (text += data.toString("latin1")))
          socket.on("close", () => resolve(text))
          socket.on("error", () => resolve(text))
        })
      for (const target of ["//[", "//:99999/"]) {
        const answer = await raw(target)
        // Bun.serve reads these as paths (401: no token); node:http once threw out of its listener.
        expect(answer.split("\r\n")[0]).toBe(runtime === "node:http" ? "HTTP/1.1 400 Bad Request" : "HTTP/1.1 401 Unauthorized")
      }
      const heartbeat = await fetch(`${f.hub.url}/v1/agent/heartbeat`, {
        method: "POST",
        headers: { ...agentHeaders(), "content-type": "application/json" },
        body: JSON.stringify({ runs: [] })
      })
      expect(heartbeat.status).toBe(200)
    })
  })

  it("answers what the session's owner refuses with its status: another instance's run (404), a run that has ended (410)", async () => {
    const f = await start()
    const other = await Effect.runPromise(Scope.make())
    try {
      const token = `refusing-${"y".repeat(20)}`
      await Effect.runPromise(
        f.hub
          .open(`${NAME.slice(0, -2)}zz`, token, {
            onOutput: (runId) => Effect.succeed(runId === "ended" ? { refused: 410 as const, error: "run ended has ended" } : { refused: 404 as const, error: `run ${runId} is not this instance's` }),
            onExit: (report) => Effect.succeed({ refused: 404 as const, error: `run ${report.runId} is not this instance's` })
          })
          .pipe(Scope.extend(other))
      )
      const headers = { ...agentHeaders(token), "content-type": "application/octet-stream" }
      const output = (runId: string) => fetch(`${f.hub.url}/v1/agent/output?runId=${runId}&stream=stdout&offset=0`, { method: "POST", headers, body: "x" })
      const ended = await output("ended")
      expect([ended.status, await ended.json()]).toEqual([410, { error: "run ended has ended" }])
      const foreign = await output("someone")
      expect([foreign.status, await foreign.json()]).toEqual([404, { error: "run someone is not this instance's" }])
      const exit = await fetch(`${f.hub.url}/v1/agent/exit`, {
        method: "POST",
        headers: { ...headers, "content-type": "application/json" },
        body: JSON.stringify({ runId: "someone", exitCode: 0, signal: null, reason: "exited", stdoutBytes: 0, stderrBytes: 0 })
      })
      expect([exit.status, await exit.json()]).toEqual([404, { error: "run someone is not this instance's" }])
    } finally {
      await Effect.runPromise(Scope.close(other, Exit.void))
      await stop(f)
    }
  })

  it("finds each agent's session by its token among many, and a closed session's token stops working", async () => {
    const f = await start()
    const others = await Effect.runPromise(Scope.make())
    try {
      const seen = new Map<string, Array<number>>()
      const tokens = Array.from({ length: 50 }, (_, i) => `token-${i}-${"x".repeat(20)}`)
      await Effect.runPromise(
        Effect.forEach(tokens, (token, i) =>
          f.hub.open(`${NAME.slice(0, -2)}${String(i).padStart(2, "0")}`, token, {
            onOutput: (_runId, _stream, offset, data) =>
              Effect.sync(() => {
                seen.set(token, [...(seen.get(token) ?? []), data.length])
                return { next: offset + data.length, gap: false }
              }),
            onExit: () => Effect.void
          })
        ).pipe(Scope.extend(others))
      )
      const post = (token: string, size: number) =>
        fetch(`${f.hub.url}/v1/agent/output?runId=r1&stream=stdout&offset=0`, {
          method: "POST",
          headers: { ...agentHeaders(token), "content-type": "application/octet-stream" },
          body: new Uint8Array(size)
        }).then((r) => r.status)
      for (const [i, token] of tokens.entries()) expect(await post(token, i + 1)).toBe(200)
      expect(tokens.map((t) => seen.get(t))).toEqual(tokens.map((_, i) => [i + 1]))
      expect(f.outputs).toHaveLength(0)
      expect(await post(TOKEN, 7)).toBe(200)
      expect(f.outputs.map((o) => o.data.length)).toEqual([7])
      expect(await post(`${TOKEN}-not`, 1)).toBe(401)
      await Effect.runPromise(Scope.close(others, Exit.void))
      expect(await post(tokens[0]!, 1)).toBe(401)
      expect(await post(TOKEN, 1)).toBe(200)
    } finally {
      await Effect.runPromise(Scope.close(others, Exit.void))
      await stop(f)
    }
  })

  it("streams events to the agent, and a second stream ends the first", async () => {
    const f = await start()
    try {
      const first = await fetch(`${f.hub.url}/v1/agent/events`, { headers: agentHeaders() })
      expect(first.status).toBe(200)
      expect(first.headers.get("content-type")).toContain("text/event-stream")
      if (first.body === null) throw new Error("no event stream body")
      const firstBody = first.body
      expect((await readUntil(firstBody, (t) => t.includes(": connected"))).ended).toBe(false)
      await Effect.runPromise(f.session.startRun({ runId: "r1", command: "echo hi", env: {}, workdir: null, maxDurationMs: null }))
      const run = await readUntil(firstBody, (t) => t.includes("event: run"))
      expect(run.text).toContain('"runId":"r1"')
      // A reconnect gets the run again (the agent ignores repeats) and the old stream ends.
      const second = await fetch(`${f.hub.url}/v1/agent/events`, { headers: agentHeaders() })
      if (second.body === null) throw new Error("no event stream body")
      expect((await readUntil(second.body, (t) => t.includes('"runId":"r1"'))).ended).toBe(false)
      expect((await readUntil(firstBody, () => false)).ended).toBe(true)
      await Effect.runPromise(f.session.shutdown)
      expect((await readUntil(second.body, (t) => t.includes("event: shutdown"))).ended).toBe(false)
    } finally {
      await stop(f)
    }
  })

  it("answers another controller's cancel only with the control secret, and stops listening when closed", async () => {
    const f = await start()
    const cancel = (secret: string) =>
      fetch(`${f.hub.url}/v1/control/runs/r9/cancel`, { method: "POST", headers: { authorization: `Bearer ${secret}` } })
    try {
      expect((await cancel("not-the-secret")).status).toBe(401)
      const answer = await cancel("control-secret")
      expect(answer.status).toBe(200)
      expect(await answer.json()).toEqual({ runId: "r9", state: "cancelled r9" })
    } finally {
      await stop(f)
    }
    await expect(register(f)).rejects.toThrow()
  })

  it("closing lets an answer already being made reach its caller, ends the event streams, and stops listening", async () => {
    // An owner's process ends right after its run does: a cancel that run's end has just answered
    // must still reach the other process, or it takes the owner for gone.
    const f = await start((runId) => Effect.as(Effect.sleep("300 millis"), `cancelled ${runId}`))
    const { hub } = f
    const events = await fetch(`${hub.url}/v1/agent/events`, { headers: agentHeaders() })
    expect(events.status).toBe(200)
    const streamed = readUntil(events.body!, () => false)
    const answer = fetch(`${hub.url}/v1/control/runs/r7/cancel`, { method: "POST", headers: { authorization: "Bearer control-secret" } }).then(
      async (res) => ({ status: res.status, body: (await res.json()) as unknown }),
      (error: unknown) => ({ status: 0, body: String(error) })
    )
    await new Promise((resolve) => setTimeout(resolve, 50))
    const started = Date.now()
    await stop(f)
    const took = Date.now() - started
    expect(await answer).toEqual({ status: 200, body: { runId: "r7", state: "cancelled r7" } })
    expect((await streamed).ended).toBe(true)
    expect(took).toBeLessThan(1_500)
    await expect(register(f)).rejects.toThrow()
  })
})
