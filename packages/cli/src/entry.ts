import { writeSync } from "node:fs"
import { VERSION } from "./version.ts"

// No top-level await in this file: the CLI is bundled as CommonJS with precompiled bytecode
// (see the build script), which starts well faster than parsing the bundle on every call, and
// CommonJS has no top-level await.

const argv = process.argv.slice(2)

const flush = async () => {
  // Let buffered output reach a pipe before exiting; process.exit does not wait for it.
  await new Promise<void>((resolve) => process.stdout.write("", () => resolve()))
  await new Promise<void>((resolve) => process.stderr.write("", () => resolve()))
}

/**
 * Writes to stdout without touching `process.stdout`: on Bun its first use builds a stream and
 * loads node:tty, which costs more than starting Bun itself. A descriptor left non-blocking by
 * whoever gave it to us can refuse the write (EAGAIN); the stream then does it properly.
 */
const writeOut = async (text: string): Promise<void> => {
  try {
    writeSync(1, text)
  } catch {
    process.stdout.write(text)
    await flush()
  }
}

const run = async (): Promise<void> => {
  // `repl --version` is what scripts and shells call most; answering it before the engine's
  // modules load keeps it at the cost of starting Bun.
  if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v")) return writeOut(`${VERSION}\n`)
  const { main } = await import("./main.ts")
  const code = await main(argv)
  await flush()
  process.exit(code)
}

void run()
