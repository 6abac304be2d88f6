import { Either, Schema } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { describeParseError } from "../parse-error.ts"

/** The request body, or null when it is larger than `maxBytes` or the connection broke. */
export const readBody = (req: IncomingMessage, maxBytes: number): Promise<Buffer | null> =>
  new Promise((resolve) => {
    const chunks: Array<Buffer> = []
    let size = 0
    req.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size > maxBytes) {
        resolve(null)
        req.destroy()
        return
      }
      chunks.push(chunk)
    })
    req.on("end", () => resolve(Buffer.concat(chunks)))
    req.on("error", () => resolve(null))
  })

export const sendJson = (res: ServerResponse, status: number, body: unknown): void => {
  const text = JSON.stringify(body)
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
  res.end(text)
}

/** Parses and decodes a JSON body; the error is a one-line reason for a 400 answer. */
export const decodeJson = <A, I>(schema: Schema.Schema<A, I>, body: Uint8Array): Either.Either<A, string> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.length).toString("utf8"))
  } catch {
    return Either.left("body is not JSON")
  }
  try {
    return Either.mapLeft(Schema.decodeUnknownEither(schema)(parsed), describeParseError)
  } catch {
    // JSON nested deep enough to exhaust the stack while it is decoded (JSON.parse takes it).
    return Either.left("body is JSON nested too deeply")
  }
}

export const sseEvent = (event: string, data: unknown): string => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`
