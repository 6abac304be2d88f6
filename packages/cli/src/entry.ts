import { main } from "./main.ts"

const code = await main(process.argv.slice(2))
// Let buffered output reach a pipe before exiting; process.exit does not wait for it.
await new Promise<void>((resolve) => process.stdout.write("", () => resolve()))
await new Promise<void>((resolve) => process.stderr.write("", () => resolve()))
process.exit(code)
