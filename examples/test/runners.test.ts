// examples/vitest, examples/jest and examples/bun-test, each through `npm test` in its folder as
// a user runs it: Vitest and Jest on Node, `bun test` on Bun. After each run, /proc must show no
// process of any instance the run launched — nothing waited for a lease to lapse.
import { execa } from "execa"
import { join } from "node:path"
import { afterEach, beforeEach, expect, it } from "vitest"
import { cleanUp, examplesDir, exampleEnv, instancePrefix, processesNamed, runnerTimeout, tempHome } from "./support.ts"

let home: string
beforeEach(() => {
  home = tempHome()
})
afterEach(() => cleanUp(home))

const npmTest = (example: string) =>
  execa("npm", ["test", "--silent"], {
    cwd: join(examplesDir, example),
    env: exampleEnv(home),
    reject: false,
    timeout: runnerTimeout,
    stdin: "ignore",
    all: true
  })

it("examples/vitest: fixtures and @effect/vitest, on Node", async () => {
  const result = await npmTest("vitest")
  expect(result.all).toMatch(/Tests\s+7 passed \(7\)/)
  expect(result.exitCode, result.all).toBe(0)
  expect(await processesNamed(instancePrefix(home))).toEqual([])
}, runnerTimeout)

it("examples/jest: useSkyRepl and the global teardown, on Node", async () => {
  const result = await npmTest("jest")
  expect(result.all).toMatch(/Tests:\s+5 passed, 5 total/)
  expect(result.exitCode, result.all).toBe(0)
  // Including the run its beforeAll launched, ended by the file's afterAll.
  expect(await processesNamed(instancePrefix(home))).toEqual([])
}, runnerTimeout)

it("examples/bun-test: the Promise client under bun test", async () => {
  const result = await npmTest("bun-test")
  expect(result.all).toMatch(/4 pass\n\s*0 fail/)
  expect(result.exitCode, result.all).toBe(0)
  expect(await processesNamed(instancePrefix(home))).toEqual([])
}, runnerTimeout)
