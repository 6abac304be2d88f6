// Crash safety, the Testcontainers promise without a reaper container: SIGKILL a Vitest run and a
// Jest run while a fixture's instance is running, wait out the lease TTL, run any SkyREPL
// process, and /proc shows nothing of that instance.
import { Schema } from "effect"
import { execa } from "execa"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { afterEach, beforeEach, expect, it } from "vitest"
import { bin, cleanUp, eventually, examplesDir, exampleEnv, processesOf, repl, runnerTimeout, sleep, tempHome } from "./support.ts"

const cases = join(examplesDir, "test", "cases")

/** Short enough to wait out in a test; the dead-man window (60 s here) is far longer. */
const leaseTtl = "2s"
const leaseTtlMs = 2_000

const Instances = Schema.parseJson(Schema.Array(Schema.Struct({ name: Schema.String, state: Schema.String })))

let home: string
beforeEach(() => {
  home = tempHome()
})
afterEach(() => cleanUp(home))

const killMidTest = async (command: string, args: ReadonlyArray<string>, extra: Record<string, string> = {}) => {
  const readyFile = join(home, "ready")
  // Its own process group, so the runner and every worker it forked can be killed at once. The
  // instance's processes are not in it: a sandbox runs in a session of its own.
  const runner = execa(command, args, {
    env: exampleEnv(home, { CASE_READY: readyFile, CASE_RECORD: join(home, "record.txt"), SKYREPL_LEASE_TTL: leaseTtl, ...extra }),
    detached: true,
    reject: false,
    stdin: "ignore"
  })
  const group = runner.pid
  if (group === undefined) throw new Error(`${command} did not start`)
  try {
    await eventually("the case holds its instance", () => existsSync(readyFile) && readFileSync(readyFile, "utf8") !== "", 60_000)
  } catch (error) {
    // Never leave the runner behind a failed test: it would hold its instance until killed.
    process.kill(-group, "SIGKILL")
    throw error
  }
  const name = readFileSync(readyFile, "utf8")
  expect((await processesOf(name)).length).toBeGreaterThan(0)

  process.kill(-group, "SIGKILL")
  const ended = await runner
  expect(ended.signal).toBe("SIGKILL")
  // Nothing got to end it: no fixture teardown, no exit hook. The instance is still there.
  expect((await processesOf(name)).length).toBeGreaterThan(0)

  await sleep(leaseTtlMs + 500)
  const next = await repl(home, ["run", "list", "--json"], { SKYREPL_LEASE_TTL: leaseTtl })
  expect(next.exitCode).toBe(0)
  expect(await processesOf(name)).toEqual([])
  const listed = Schema.decodeUnknownSync(Instances)((await repl(home, ["instance", "list", "--all", "--json"])).stdout)
  expect(listed.find((i) => i.name === name)?.state).toBe("terminated")
}

it("SIGKILL of a Vitest run mid-test: nothing of the fixture's instance after the lease TTL", async () => {
  await killMidTest(bin("vitest"), ["run", "--root", join(cases, "vitest"), "crash"])
}, runnerTimeout)

it("SIGKILL of a Jest run mid-test: nothing of the instance after the lease TTL", async () => {
  await killMidTest(bin("jest"), ["--config", join(cases, "jest", "jest.config.js"), "crash"], {
    NODE_OPTIONS: "--experimental-vm-modules --disable-warning=ExperimentalWarning"
  })
}, runnerTimeout)
