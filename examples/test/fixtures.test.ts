// The test fixtures under their own runners, with tests that pass, fail and time out on purpose
// (examples/test/cases): every instance ends with its test, and nothing outlives the run.
import { Schema } from "effect"
import { execa } from "execa"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { afterEach, beforeEach, expect, it } from "vitest"
import { bin, cleanUp, examplesDir, exampleEnv, processesOf, runnerTimeout, tempHome } from "./support.ts"

const cases = join(examplesDir, "test", "cases")

let home: string
beforeEach(() => {
  home = tempHome()
})
afterEach(() => cleanUp(home))

const caseEnv = () => exampleEnv(home, { CASE_RECORD: join(home, "record.txt") })

const recorded = () =>
  readFileSync(join(home, "record.txt"), "utf8")
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => {
      const [label = "", name = ""] = line.split(" ")
      return { label, name }
    })

/** The part of a JSON report that Vitest's `json` reporter and Jest's `--json` share. */
const Report = Schema.parseJson(
  Schema.Struct({
    testResults: Schema.Array(Schema.Struct({ assertionResults: Schema.Array(Schema.Struct({ title: Schema.String, status: Schema.String })) }))
  })
)

const statuses = (reportFile: string): Record<string, string> => {
  const report = Schema.decodeUnknownSync(Report)(readFileSync(reportFile, "utf8"))
  return Object.fromEntries(report.testResults.flatMap((file) => file.assertionResults.map((a) => [a.title, a.status])))
}

/** Runs the Vitest cases named, with a JSON report: each test's status, and the run's exit code. */
const runVitest = async (...names: ReadonlyArray<string>) => {
  const report = join(home, "report.json")
  const result = await execa(bin("vitest"), ["run", "--root", join(cases, "vitest"), ...names, "--reporter=json", `--outputFile=${report}`], {
    env: caseEnv(),
    reject: false,
    timeout: runnerTimeout,
    stdin: "ignore"
  })
  return { statuses: statuses(report), exitCode: result.exitCode }
}

/** Runs the Jest cases named as examples/jest runs its files (ESM), with a JSON report. */
const runJest = async (...names: ReadonlyArray<string>) => {
  const report = join(home, "report.json")
  const result = await execa(bin("jest"), ["--config", join(cases, "jest", "jest.config.js"), ...names, "--json", `--outputFile=${report}`, "--forceExit"], {
    env: { ...caseEnv(), NODE_OPTIONS: "--experimental-vm-modules --disable-warning=ExperimentalWarning" },
    reject: false,
    timeout: runnerTimeout,
    stdin: "ignore"
  })
  return { statuses: statuses(report), exitCode: result.exitCode }
}

it("Vitest: an instance ends with its test, passed, failed or timed out", async () => {
  const result = await runVitest("outcomes")
  expect(result.statuses).toEqual({
    passes: "passed",
    fails: "failed",
    "times out": "failed",
    "times out while its run fixture launches": "failed",
    "every instance of the earlier tests is terminated": "passed"
  })
  expect(result.exitCode).toBe(1)
  for (const { name } of recorded().filter((r) => r.name !== "-")) expect(await processesOf(name)).toEqual([])
}, runnerTimeout)

it("Vitest: fileRepl's instance is shared by the file's tests and ended once the file is done", async () => {
  const result = await runVitest("shared")
  expect(result.statuses).toEqual({
    "launches an instance for the whole file": "passed",
    "fails, and the file's instance lives on": "failed",
    "a test's own instance still ends with that test": "passed",
    "is still running in the last test": "passed"
  })
  expect(result.exitCode).toBe(1)
  expect(recorded().map((r) => r.label)).toEqual(["shared", "own"])
  for (const { name } of recorded()) expect(await processesOf(name)).toEqual([])
}, runnerTimeout)

it("Jest: a test.concurrent test's instance is its own, ended soon after that test, while the others run", async () => {
  // Jest runs no afterEach for concurrent tests: their launches went to the file's owner and
  // outlived their tests until the file ended.
  const result = await runJest("concurrent")
  expect(result.statuses).toEqual({
    slow: "passed",
    quick: "passed",
    "times out": "failed",
    sequential: "passed",
    "every earlier test's instance is terminated": "passed"
  })
  expect(result.exitCode).toBe(1)
  expect(recorded().map((r) => r.label).sort()).toEqual(["quick", "sequential", "slow", "timed-out"])
  for (const { name } of recorded()) expect(await processesOf(name)).toEqual([])
}, runnerTimeout)

it("Jest: a retried test.concurrent test's failed attempt's instance ends with that attempt", async () => {
  // The second attempt's owner took the first's place among the open ones before the sweep
  // ended it: the first attempt's instance lived until the file was done.
  const result = await runJest("retry")
  expect(result.statuses).toEqual({
    "fails the first time": "passed",
    "every attempt's instance is terminated": "passed"
  })
  expect(result.exitCode).toBe(0)
  expect(recorded().map((r) => r.label)).toEqual(["attempt-1", "attempt-2"])
  for (const { name } of recorded()) expect(await processesOf(name)).toEqual([])
}, runnerTimeout)

it("Jest: a launch a timed-out test makes after its end is refused, not charged to the test running then", async () => {
  const result = await runJest("late")
  expect(result.statuses).toEqual({
    "times out, then launches": "failed",
    "the next test keeps its own": "passed",
    "every earlier test's instance is terminated": "passed"
  })
  expect(result.exitCode).toBe(1)
  expect(recorded().map((r) => r.label)).toEqual(["next", "late-refused"])
  for (const { name } of recorded().filter((r) => r.name !== "-")) expect(await processesOf(name)).toEqual([])
}, runnerTimeout)

it("Jest: what a beforeEach declared before useSkyRepl launches is the test's, ended with it", async () => {
  const result = await runJest("order")
  expect(result.statuses).toEqual({
    "runs with what an earlier beforeEach launched": "passed",
    "which ended with that test": "passed"
  })
  expect(result.exitCode).toBe(0)
  for (const { name } of recorded()) expect(await processesOf(name)).toEqual([])
}, runnerTimeout)

it("Jest: an instance ends with its test; beforeAll's with the file; the global teardown ends a leak", async () => {
  const result = await runJest("outcomes", "leak")
  expect(result.statuses).toEqual({
    passes: "passed",
    fails: "failed",
    "times out": "failed",
    "the earlier tests' instances are terminated, the file's is not": "passed",
    "launches and forgets": "passed"
  })
  expect(result.exitCode).toBe(1)
  expect(recorded().map((r) => r.label).sort()).toEqual(["failed", "file", "leaked", "passed", "timed-out"])
  for (const { name } of recorded()) expect(await processesOf(name)).toEqual([])
}, runnerTimeout)
