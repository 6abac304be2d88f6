import { execFileSync } from "node:child_process"
import { closeSync, constants as fs, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { descriptorOutput, SYNC_LIMIT } from "../src/stdio.ts"

/** A sink standing in for the runtime's writer: what it was given, and whether it was made. */
const fakeSink = () => {
  const chunks: Array<Buffer> = []
  let made = 0
  const open = () => {
    made++
    return {
      write: async (data: Uint8Array) => {
        // Settles later, as a write to a slow pipe does: order must hold all the same.
        await new Promise((resolve) => setTimeout(resolve, 1))
        chunks.push(Buffer.from(data))
      }
    }
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
  it("writes a short output to the descriptor and never makes the sink", () => {
    const file = join(scratch(), "out")
    const fd = openSync(file, "w")
    const sink = fakeSink()
    const out = descriptorOutput(fd, sink.open)
    out.write("RUN  STATE\n")
    out.write(new TextEncoder().encode("abc  succeeded\n"))
    closeSync(fd)
    expect(readFileSync(file, "utf8")).toBe("RUN  STATE\nabc  succeeded\n")
    expect(sink.made()).toBe(0)
  })

  it("past the direct limit, the rest is queued, and flush waits until all of it is written, in order", async () => {
    const file = join(scratch(), "out")
    const fd = openSync(file, "w")
    const sink = fakeSink()
    const out = descriptorOutput(fd, sink.open)
    const line = "x".repeat(1023) + "\n"
    const lines = (SYNC_LIMIT / line.length) * 2
    for (let i = 0; i < lines; i++) out.write(line)
    await out.flush()
    closeSync(fd)
    expect(sink.made()).toBe(1)
    expect(readFileSync(file, "utf8") + sink.text()).toBe(line.repeat(lines))
    expect(readFileSync(file, "utf8").length).toBeLessThanOrEqual(SYNC_LIMIT)
  })

  it("a descriptor that refuses to block hands the rest of the write to the sink", async () => {
    const pipe = fifo()
    const sink = fakeSink()
    const out = descriptorOutput(pipe.writer, sink.open)
    // Fill the pipe so that the next direct write cannot go through whole.
    const filler = Buffer.alloc(1024 * 1024, 0x61)
    let filled = 0
    try {
      for (;;) filled += writeSync(pipe.writer, filler)
    } catch {
      // EAGAIN: full.
    }
    out.write("after the pipe filled\n")
    out.write("and then this\n")
    await out.flush()
    expect(sink.made()).toBe(1)
    expect(pipe.drain().length).toBe(filled)
    expect(sink.text()).toBe("after the pipe filled\nand then this\n")
    closeSync(pipe.writer)
    closeSync(pipe.reader)
  })

  it("a pipe whose reader left fails a direct write with EPIPE", () => {
    const pipe = fifo()
    closeSync(pipe.reader)
    const out = descriptorOutput(pipe.writer, fakeSink().open)
    let code: unknown
    try {
      out.write("nobody reads this\n")
    } catch (error) {
      code = error instanceof Error && "code" in error ? error.code : error
    }
    expect(code).toBe("EPIPE")
    closeSync(pipe.writer)
  })

  it("a queued write's error goes to the listeners once, and nothing more is written after it", async () => {
    const file = join(scratch(), "out")
    const fd = openSync(file, "w")
    const written: Array<string> = []
    const out = descriptorOutput(fd, () => ({
      write: async (data: Uint8Array) => {
        written.push(Buffer.from(data).toString())
        if (written.length === 1) throw Object.assign(new Error("EPIPE: broken pipe, write"), { code: "EPIPE" })
      }
    }))
    const errors: Array<unknown> = []
    out.onSinkError((error) => errors.push(error))
    out.write("x".repeat(SYNC_LIMIT + 1))
    out.write("after the error\n")
    await out.flush()
    closeSync(fd)
    expect(written).toEqual(["x".repeat(SYNC_LIMIT + 1)])
    expect(errors.map((e) => (e instanceof Error && "code" in e ? e.code : e))).toEqual(["EPIPE"])
  })

  it("a file is not a terminal", () => {
    const fd = openSync(join(scratch(), "out"), "w")
    expect(descriptorOutput(fd, fakeSink().open).isTTY).toBe(false)
    closeSync(fd)
  })
})
