// examples/notebook in a real `bun repl` on a terminal, typed cell by cell as its README says
// (`.editor`, the cell, Ctrl-D). Then Ctrl-D on an empty line leaves the REPL, and nothing of
// any instance the session started is left.
import { type ChildProcess, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { afterEach, beforeEach, expect, it } from "vitest"
import { bin, cleanUp, eventually, examplesDir, exampleEnv, processesOf, repl, runnerTimeout, tempHome } from "./support.ts"

const notebookDir = join(examplesDir, "notebook")
const ctrlD = "\x04"

let home: string
let session: ChildProcess | null = null
beforeEach(() => {
  home = tempHome()
})
afterEach(async () => {
  session?.kill("SIGKILL")
  session = null
  await cleanUp(home)
})

/** The cells of notebook.ts: what follows each `// %%` line. */
const cells = (): ReadonlyArray<string> =>
  readFileSync(join(notebookDir, "notebook.ts"), "utf8")
    .split(/^\/\/ %%.*$/m)
    .slice(1)
    .map((cell) => cell.trim())

const plain = (text: string) => text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/\r/g, "\n")

it("a bun repl session ends its instances: with the cell, on dispose(), and when the REPL is left", async () => {
  const child = spawn("python3", ["-I", join(examplesDir, "test", "terminal.py"), bin("bun"), "repl"], {
    cwd: notebookDir,
    env: { ...process.env, ...exampleEnv(home), TERM: "xterm-256color" },
    stdio: ["pipe", "pipe", "inherit"]
  })
  session = child
  let screen = ""
  child.stdout?.on("data", (data: Buffer) => {
    screen += plain(data.toString("utf8"))
  })
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  const type = (text: string) => child.stdin?.write(text)
  const count = (text: string) => screen.split(text).length - 1
  // The REPL echoes what is typed, so markers are built at run time: the echo of `"%%" + "done-1"`
  // never contains `%%done-1`, and the echo of `hello.instance.name` no instance name.
  const shown = (pattern: RegExp) => pattern.exec(screen)?.[1] ?? null

  await eventually("the REPL starts", () => screen.includes("Welcome to Bun"), 30_000)
  for (const [i, cell] of cells().entries()) {
    const editors = count("Entering editor mode")
    type(".editor\n")
    await eventually(`editor mode for cell ${i}`, () => count("Entering editor mode") > editors)
    type(`${cell}\n`)
    type(ctrlD)
    type(`console.log("%%" + "done-${i}")\n`)
    await eventually(`cell ${i} runs`, () => screen.includes(`%%done-${i}`), 30_000)
  }
  expect(screen).not.toMatch(/SyntaxError|ReferenceError|TypeError/)

  const instance = /(repl-[0-9a-z]{8}-[0-9a-z]+-[0-9a-z]+)/.source
  const hello = shown(new RegExp(`hello: ${instance} succeeded`))
  const ticker = shown(new RegExp(`ticker: ${instance}`))
  const forgotten = shown(new RegExp(`left running: ${instance}`))
  expect(screen).toContain("\ntick")
  expect(screen).toContain("ticker ended: cancelled")
  if (hello === null || ticker === null || forgotten === null) throw new Error(`the cells did not print their instances:\n${screen}`)

  // `await using` ended hello's instance with its cell; `dispose()` ended the ticker's.
  expect(await processesOf(hello)).toEqual([])
  expect(await processesOf(ticker)).toEqual([])
  // The last one is running while the REPL is open…
  expect((await processesOf(forgotten)).length).toBeGreaterThan(0)

  // …and leaving the REPL (Ctrl-D on an empty line) ends it.
  type(ctrlD)
  expect(await exited).toBe(0)
  expect(await processesOf(forgotten)).toEqual([])

  // The next SkyREPL process finds the session's controller gone and records the ending.
  const live = await repl(home, ["instance", "list", "--json"])
  expect(live.exitCode).toBe(0)
  expect(live.stdout.trim()).toBe("[]")
}, runnerTimeout)
