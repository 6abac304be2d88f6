import { VERSION } from "./version.ts"

const argv = process.argv.slice(2)

const flush = async () => {
  // Let buffered output reach a pipe before exiting; process.exit does not wait for it.
  await new Promise<void>((resolve) => process.stdout.write("", () => resolve()))
  await new Promise<void>((resolve) => process.stderr.write("", () => resolve()))
}

// `repl --version` is what scripts and shells call most; answering it before the engine's
// modules load keeps it at the cost of starting Bun.
if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v")) {
  process.stdout.write(`${VERSION}\n`)
  await flush()
  process.exit(0)
}

const { main } = await import("./main.ts")
const code = await main(argv)
await flush()
process.exit(code)
