import { printAndEnd } from "./print.ts"
import { stderr, stdout } from "./stdio.ts"
import { VERSION } from "./version.ts"

// No top-level await in this file: the CLI is bundled as CommonJS with precompiled bytecode
// (see the build script), which starts well faster than parsing the bundle on every call, and
// CommonJS has no top-level await.

const argv = process.argv.slice(2)

/** Lets output handed to a stream reach its pipe before exiting: process.exit does not wait. */
const flush = () => Promise.all([stdout.flush(), stderr.flush()])

const run = async (): Promise<void> => {
  // `repl --version` is what scripts and shells call most; answering it before the engine's
  // modules load keeps it at the cost of starting Bun.
  if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v")) {
    // As help's: 141 for a reader gone (`repl --version | true`), one line and 1 for a full disk.
    const code = printAndEnd(`${VERSION}\n`)
    await flush()
    process.exit(code)
  }
  const { main } = await import("./main.ts")
  const code = await main(argv)
  await flush()
  process.exit(code)
}

void run()
