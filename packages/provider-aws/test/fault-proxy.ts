import { Effect, type Scope } from "effect"
import { createServer, request, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo, Socket } from "node:net"

/**
 * What the proxy does to one call, instead of (or besides) passing it to moto:
 * - `error`: answers with an AWS error; moto never sees the call.
 * - `error-after`: passes the call to moto (which acts on it), then answers with an AWS error,
 *   as when EC2 did the work but the answer was lost.
 * - `delay`: passes the call on and holds the answer back for `ms`.
 * - `hide`: for DescribeInstances, TerminateInstances and DescribeImages, answers as EC2 does for
 *   a resource it does not show yet (eventual consistency right after RunInstances or
 *   CreateImage); moto never sees the call.
 * - `reset`: closes the connection without an answer (a network failure); moto never sees the call.
 * - `page`: answers 200 with an HTML page (a proxy's, a captive portal's), which the SDK reads
 *   as an answer with nothing in it; moto never sees the call.
 * - `garble-after`: passes the call to moto (which acts on it), then answers 200 with the start of
 *   moto's answer only, which no XML parser reads (a success whose body was cut short).
 */
export type Fault =
  | { readonly kind: "error"; readonly status: number; readonly code: string; readonly message?: string }
  | { readonly kind: "error-after"; readonly status: number; readonly code: string }
  | { readonly kind: "delay"; readonly ms: number }
  | { readonly kind: "hide" }
  | { readonly kind: "reset" }
  | { readonly kind: "garble-after" }
  | { readonly kind: "page"; readonly status?: number }

export interface FaultRule {
  readonly action: string
  /** Which calls of `action` (1-based, counted since the rules were set), or every call. */
  readonly calls: ReadonlyArray<number> | "all"
  /** Only calls signed for this region (their credential scope); default: every region. */
  readonly region?: string
  readonly fault: Fault
}

export interface FaultProxy {
  readonly url: string
  /** Replaces the rules and restarts the call counts. */
  readonly setRules: (rules: ReadonlyArray<FaultRule>) => void
  /** Calls of `action` seen since the rules were last set. */
  readonly calls: (action: string) => number
  /** Every call seen since the rules were last set, in order, by action. */
  readonly log: () => ReadonlyArray<string>
  /** Calls of `action` whose client went away before its answer. */
  readonly abandoned: (action: string) => number
  /** The query parameters of each call of `action` since the rules were last set, in order. */
  readonly params: (action: string) => ReadonlyArray<URLSearchParams>
}

const readAll = (req: IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => resolve(Buffer.concat(chunks)))
    req.on("error", reject)
  })

const escapeXml = (text: string): string => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

/** The error bodies of the two Query protocols in play: EC2's and STS's. */
const errorBody = (action: string, code: string, message: string): string =>
  action === "GetCallerIdentity"
    ? `<?xml version="1.0" encoding="UTF-8"?><ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>${code}</Code><Message>${escapeXml(message)}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>`
    : `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>${code}</Code><Message>${escapeXml(message)}</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>`

const emptyReservations =
  '<?xml version="1.0" encoding="UTF-8"?><DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>fault-proxy</requestId><reservationSet/></DescribeInstancesResponse>'

const emptyImages =
  '<?xml version="1.0" encoding="UTF-8"?><DescribeImagesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>fault-proxy</requestId><imagesSet/></DescribeImagesResponse>'

const defaultMessages: Readonly<Record<string, string>> = {
  InsufficientInstanceCapacity: "We currently do not have sufficient capacity in the Availability Zone you requested.",
  RequestLimitExceeded: "Request limit exceeded.",
  InternalError: "An internal error has occurred",
  UnauthorizedOperation:
    "You are not authorized to perform this operation. User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ec2:RunInstances. Encoded authorization failure message: AAAA",
  VcpuLimitExceeded: "You have requested more vCPU capacity than your current vCPU limit of 32 allows for the instance bucket that the specified instance type belongs to.",
  InvalidParameterValue: "Value (t3.micro) for parameter instanceType is invalid.",
  InvalidClientTokenId: "The security token included in the request is invalid."
}

/** An HTTP proxy in front of moto that breaks chosen calls, for the life of the scope. */
export const startFaultProxy = (target: string): Effect.Effect<FaultProxy, never, Scope.Scope> =>
  Effect.gen(function* () {
    const upstream = new URL(target)
    let rules: ReadonlyArray<FaultRule> = []
    let counts = new Map<string, number>()
    let abandonedCounts = new Map<string, number>()
    let log: Array<string> = []
    let seen: Array<URLSearchParams> = []
    const sockets = new Set<Socket>()

    const forward = (req: IncomingMessage, body: Buffer): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> =>
      new Promise((resolve, reject) => {
        const out = request(
          { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
          (res) => {
            readAll(res).then(
              (data) => {
                const headers: Record<string, string> = {}
                for (const [key, value] of Object.entries(res.headers)) {
                  if (typeof value === "string" && key !== "content-length" && key !== "transfer-encoding" && key !== "connection") headers[key] = value
                }
                resolve({ status: res.statusCode ?? 502, headers, body: data })
              },
              reject
            )
          }
        )
        out.on("error", reject)
        out.end(body)
      })

    const send = (res: ServerResponse, status: number, body: string | Buffer, headers: Record<string, string> = { "content-type": "text/xml" }) => {
      if (res.destroyed) return
      res.writeHead(status, { ...headers, "content-length": Buffer.byteLength(body) })
      res.end(body)
    }

    const handle = async (req: IncomingMessage, res: ServerResponse) => {
      const body = await readAll(req)
      const params = new URLSearchParams(body.toString("utf8"))
      const action = params.get("Action") ?? "unknown"
      // A client that goes away before its answer (an aborted request) abandoned the call. It is
      // counted with the rules it arrived under: an earlier test's request, abandoned at its
      // time limit, may close only after the next test set its rules.
      let reset = false
      const abandonedUnder = abandonedCounts
      res.once("close", () => {
        if (!res.writableEnded && !reset) abandonedUnder.set(action, (abandonedUnder.get(action) ?? 0) + 1)
      })
      const call = (counts.get(action) ?? 0) + 1
      counts.set(action, call)
      log.push(action)
      seen.push(params)
      // The region a call is for is in its signature's credential scope: KEY/DATE/REGION/SERVICE/aws4_request.
      const region = /Credential=[^/]+\/[^/]+\/([^/]+)\//.exec(String(req.headers["authorization"] ?? ""))?.[1]
      const rule = rules.find((r) => r.action === action && (r.calls === "all" || r.calls.includes(call)) && (r.region === undefined || r.region === region))
      const fault = rule?.fault
      if (fault?.kind === "reset") {
        reset = true
        res.socket?.resetAndDestroy()
        return
      }
      if (fault?.kind === "error") {
        return send(res, fault.status, errorBody(action, fault.code, fault.message ?? defaultMessages[fault.code] ?? fault.code))
      }
      if (fault?.kind === "page") {
        return send(res, fault.status ?? 200, "<html><body><h1>Sign in to the network</h1></body></html>", { "content-type": "text/html" })
      }
      if (fault?.kind === "hide" && (action === "DescribeInstances" || action === "TerminateInstances")) {
        const ids = [...params.keys()].filter((k) => k.startsWith("InstanceId."))
        return ids.length > 0 || action === "TerminateInstances"
          ? send(res, 400, errorBody(action, "InvalidInstanceID.NotFound", `The instance ID '${params.get(ids[0] ?? "") ?? ""}' does not exist`))
          : send(res, 200, emptyReservations)
      }
      if (fault?.kind === "hide" && action === "DescribeImages") {
        const ids = [...params.keys()].filter((k) => k.startsWith("ImageId."))
        return ids.length > 0
          ? send(res, 400, errorBody(action, "InvalidAMIID.NotFound", `The image id '[${params.get(ids[0] ?? "") ?? ""}]' does not exist`))
          : send(res, 200, emptyImages)
      }
      const answer = await forward(req, body)
      if (fault?.kind === "error-after") {
        return send(res, fault.status, errorBody(action, fault.code, defaultMessages[fault.code] ?? fault.code))
      }
      if (fault?.kind === "garble-after") {
        return send(res, 200, answer.body.subarray(0, Math.min(200, answer.body.length - 1)))
      }
      if (fault?.kind === "delay") await new Promise((r) => setTimeout(r, fault.ms))
      send(res, answer.status, answer.body, answer.headers)
    }

    const server = createServer((req, res) => {
      handle(req, res).catch(() => {
        if (!res.headersSent) send(res, 502, "proxy failure")
        else res.destroy()
      })
    })
    server.on("connection", (socket: Socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
    })
    const port = yield* Effect.acquireRelease(
      Effect.async<number>((resume) => {
        server.listen(0, "127.0.0.1", () => {
          const address: AddressInfo | string | null = server.address()
          resume(typeof address === "object" && address !== null ? Effect.succeed(address.port) : Effect.die(new Error(`listening on ${String(address)}`)))
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          for (const socket of sockets) socket.destroy()
          server.close(() => resume(Effect.void))
        })
    )
    return {
      url: `http://127.0.0.1:${port}`,
      setRules: (next) => {
        rules = next
        counts = new Map()
        abandonedCounts = new Map()
        log = []
        seen = []
      },
      calls: (action) => counts.get(action) ?? 0,
      abandoned: (action) => abandonedCounts.get(action) ?? 0,
      log: () => [...log],
      params: (action) => seen.filter((p) => p.get("Action") === action)
    }
  })
