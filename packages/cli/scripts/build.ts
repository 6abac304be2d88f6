/**
 * Builds the CLI bundle (dist/repl.js): CommonJS with Bun's precompiled bytecode, which starts
 * well faster than Bun parsing the bundle's source on every call; the AWS SDK and the Node
 * SQLite driver stay outside (loaded only by the commands that use them).
 *
 * Two libraries are changed on the way in, so that evaluating them makes no stdio stream. On
 * Bun, making `process.stdin`, `stdout` or `stderr` loads node:tty, node:net and the stream
 * modules, about 10 ms of every command (bench B2), although the CLI's commands write through
 * their descriptors (src/stdio.ts):
 *
 * - clipanion's `Cli` module builds `Cli.defaultContext` from the three streams and node:tty's
 *   colour depth. The bundle's copy makes those four entries getters that run on first use,
 *   and not enumerable, so that clipanion's own spreading of the default context into a
 *   command's does not run them either (src/main.ts gives the streams to the commands that
 *   need them: clipanion's help and version);
 * - Effect's logger module asks `process.stdout` whether it is a terminal (to colour its pretty
 *   logger, which the CLI does not use). The bundle's copy asks the descriptor: the same answer
 *   (a stream's isTTY is isatty of its descriptor), node:tty loaded only for a character device.
 *
 * Each edit names the exact text it replaces, and the build fails if the library's text is
 * different (a new version to look at: both are pinned).
 */
import type { BunPlugin } from "bun"
import { rmSync } from "node:fs"
import { join } from "node:path"

const root = join(import.meta.dir, "..")

const edits: ReadonlyArray<{ readonly file: RegExp; readonly from: string; readonly to: string }> = [
  {
    file: /clipanion[\\/]lib[\\/]advanced[\\/]Cli\.mjs$/,
    from: [
      "Cli.defaultContext = {",
      "    env: process.env,",
      "    stdin: process.stdin,",
      "    stdout: process.stdout,",
      "    stderr: process.stderr,",
      "    colorDepth: getDefaultColorDepth(),",
      "};"
    ].join("\n"),
    to: [
      "Cli.defaultContext = Object.defineProperties({ env: process.env }, {",
      "    stdin: { get: () => process.stdin, enumerable: false },",
      "    stdout: { get: () => process.stdout, enumerable: false },",
      "    stderr: { get: () => process.stderr, enumerable: false },",
      "    colorDepth: { get: () => getDefaultColorDepth(), enumerable: false },",
      "});"
    ].join("\n")
  },
  {
    file: /clipanion[\\/]lib[\\/]platform[\\/]node\.mjs$/,
    from: "import tty from 'tty';",
    // Loaded when the colour depth is first asked for (the lazy context above), not before.
    to: "const tty = { get WriteStream() { return process.getBuiltinModule('node:tty').WriteStream; } };"
  },
  {
    file: /effect[\\/]dist[\\/]esm[\\/]internal[\\/]logger\.js$/,
    from: [
      'const hasProcessStdout = typeof process === "object" && process !== null && typeof process.stdout === "object" && process.stdout !== null;',
      "const processStdoutIsTTY = hasProcessStdout && process.stdout.isTTY === true;"
    ].join("\n"),
    to: [
      'const hasProcessStdout = typeof process === "object" && process !== null;',
      "const processStdoutIsTTY = hasProcessStdout && (() => {",
      "  try {",
      '    return process.getBuiltinModule("node:fs").fstatSync(1).isCharacterDevice() && process.getBuiltinModule("node:tty").isatty(1);',
      "  } catch {",
      "    return false;",
      "  }",
      "})();"
    ].join("\n")
  }
]

const lazyStdio: BunPlugin = {
  name: "lazy-stdio",
  setup(build) {
    for (const edit of edits) {
      build.onLoad({ filter: edit.file }, async ({ path }) => {
        const source = await Bun.file(path).text()
        if (!source.includes(edit.from)) {
          throw new Error(`${path}: the text packages/cli/scripts/build.ts replaces is not there (a new version of the library?)`)
        }
        return { contents: source.replace(edit.from, edit.to), loader: "js" }
      })
    }
  }
}

rmSync(join(root, "dist"), { recursive: true, force: true })
const result = await Bun.build({
  entrypoints: [join(root, "src", "entry.ts")],
  outdir: join(root, "dist"),
  naming: "repl.[ext]",
  target: "bun",
  format: "cjs",
  bytecode: true,
  minify: true,
  external: ["better-sqlite3", "@effect/sql-sqlite-node", "@aws-sdk/client-ec2", "@aws-sdk/client-sts", "@smithy/fetch-http-handler"],
  plugins: [lazyStdio],
  throw: false
})
if (!result.success) {
  for (const message of result.logs) console.error(message)
  process.exit(1)
}
