import { execFileSync } from "node:child_process"
import { closeSync, constants as fs, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Writable } from "node:stream"
import { afterEach, describe, expect, it } from "vitest"
import { descriptorOutput, SYNC_LIMIT } from "../src/stdio.ts"

/** A stream standing in for `process.stdout`: what it was given, and whether it was made. */
const fakeStream = () => {
  const chunks: Array<Buffer> = []
  let made = 0
  const open = () => {
    made++
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(Buffer.from(chunk))
        callback()
      }
    })
    return stream
  }
  return { open, made: () => made, text: () => Buffer.concat(chunks).toString() }
}

const dirs: Array<string> = []
const scratch = () => {
  const dir = mkdtempSync(join(tmpdir(), "skyrepl-stdio-"))
  dirs.push(dir)
  return dir
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

/** A FIFO opened at both ends without blocking: the write end fills up like a pipe nobody reads. */
const fifo = () => {
  const path = join(scratch(), "fifo")
  execFileSync("mkfifo", [path])
  const reader = openSync(path, fs.O_RDONLY | fs.O_NONBLOCK)
  const writer = openSync(path, fs.O_WRONLY | fs.O_NONBLOCK)
  const drain = () => {
    const out: Array<Buffer> = []
    const buffer = Buffer.alloc(65536)
    for (;;) {
      try {
        const n = readSync(reader, buffer)
        if (n === 0) break
        out.push(Buffer.from(buffer.subarray(0, n)))
      } catch {
        break
      }
    }
    return Buffer.concat(out).toString()
  }
  return { reader, writer, drain }
}

describe("the CLI's descriptor output", () => {
  it("writes a short output to the descriptor and never makes the stream", () => {
    const file = join(scratch(), "out")
    const fd = openSync(file, "w")
    const stream = fakeStream()
    const out = descriptorOutput(fd, stream.open)
    out.write("RUN  STATE\n")
    out.write(new TextEncoder().encode("abc  succeeded\n"))
    closeSync(fd)
    expect(readFileSync(file, "utf8")).toBe("RUN  STATE\nabc  succeeded\n")
    expect(stream.made()).toBe(0)
  })

  it("past the direct limit, the rest goes through the stream, in order", async () => {
    const file = join(scratch(), "out")
    const fd = openSync(file, "w")
    const stream = fakeStream()
    const out = descriptorOutput(fd, stream.open)
    const line = "x".repeat(1023) + "\n"
    const lines = (SYNC_LIMIT / line.length) * 2
    for (let i = 0; i < lines; i++) out.write(line)
    await out.flush()
    closeSync(fd)
    expect(stream.made()).toBe(1)
    expect(readFileSync(file, "utf8") + stream.text()).toBe(line.repeat(lines))
    expect(readFileSync(file, "utf8").length).toBeLessThanOrEqual(SYNC_LIMIT)
  })

  it("a descriptor that refuses to block hands the rest of the write to the stream", () => {
    const pipe = fifo()
    const stream = fakeStream()
    const out = descriptorOutput(pipe.writer, stream.open)
    // Fill the pipe so that the next direct write cannot go through whole.
    const filler = Buffer.alloc(1024 * 1024, 0x61)
    let filled = 0
    try {
      for (;;) filled += writeSync(pipe.writer, filler)
    } catch {
      // EAGAIN: full.
    }
    out.write("after the pipe filled\n")
    expect(stream.made()).toBe(1)
    expect(pipe.drain().length + stream.text().length).toBe(filled + "after the pipe filled\n".length)
    expect(stream.text().endsWith("after the pipe filled\n")).toBe(true)
    closeSync(pipe.writer)
    closeSync(pipe.reader)
  })

  it("a pipe whose reader left fails the write with EPIPE, as a stream reports it", () => {
    const pipe = fifo()
    closeSync(pipe.reader)
    const out = descriptorOutput(pipe.writer, fakeStream().open)
    let code: unknown
    try {
      out.write("nobody reads this\n")
    } catch (error) {
      code = error instanceof Error && "code" in error ? error.code : error
    }
    expect(code).toBe("EPIPE")
    closeSync(pipe.writer)
  })

  it("a file is not a terminal", () => {
    const fd = openSync(join(scratch(), "out"), "w")
    expect(descriptorOutput(fd, fakeStream().open).isTTY).toBe(false)
    closeSync(fd)
  })
})
