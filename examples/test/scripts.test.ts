// examples/effect and examples/promise, run as a user runs them: `npm start` (Bun) and
// `npm run start:node` (Node, through vite-node), each against a fresh state home.
import { Schema } from "effect"
import { execa } from "execa"
import { join } from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { cleanUp, exampleEnv, instanceNames, instancePrefix, processesNamed, repoRoot, runnerTimeout, tempHome } from "./support.ts"

let home: string
beforeEach(() => {
  home = tempHome()
})
afterEach(() => cleanUp(home))

/** What both scripts print around the chunks of the first run, which vary with timing. */
const expectedOutput = {
  first: /^launched [0-9a-z]+ on repl-/,
  last: [
    /^result: succeeded, exit 0$/,
    /^attach from byte 7: "line 2\\nline 3\\n"$/,
    /^cancel: cancelled, then already-finished; the run ended cancelled$/,
    /^live instances: 0$/
  ]
}

/** `stdout@OFFSET "TEXT"` lines: however the output was cut, each chunk starts where the last ended. */
const checkChunks = (lines: ReadonlyArray<string>) => {
  let next = 0
  let all = ""
  for (const line of lines) {
    const match = /^stdout@(\d+) (".*")$/.exec(line)
    expect(match, line).not.toBeNull()
    const data = Schema.decodeUnknownSync(Schema.parseJson(Schema.String))(match?.[2] ?? "")
    expect(Number(match?.[1])).toBe(next)
    next += Buffer.byteLength(data)
    all += data
  }
  expect(all).toBe("line 1\nline 2\nline 3\n")
}

describe.each(["examples/effect", "examples/promise"])("%s", (example) => {
  it.each([
    ["Bun", "start"],
    ["Node", "start:node"]
  ])("runs on %s and leaves no instance behind", async (_runtime, script) => {
    const result = await execa("npm", ["run", "--silent", script], {
      cwd: join(repoRoot, example),
      env: exampleEnv(home),
      reject: false,
      timeout: 60_000,
      stdin: "ignore"
    })
    expect(result.stderr).toBe("")
    expect(result.exitCode, result.stdout + result.stderr).toBe(0)
    const lines = result.stdout.split("\n").filter((line) => line !== "")
    expect(lines[0]).toMatch(expectedOutput.first)
    const tail = lines.slice(-expectedOutput.last.length)
    expectedOutput.last.forEach((pattern, i) => expect(tail[i]).toMatch(pattern))
    checkChunks(lines.slice(1, -expectedOutput.last.length))
    expect(instanceNames(result.stdout)).toHaveLength(1)
    // Both runs' instances (the listed one and the cancelled one) are gone from the machine.
    expect(await processesNamed(instancePrefix(home))).toEqual([])
  }, runnerTimeout)
})
