import { execa } from "execa"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { type Emulator, eventually, makeEmulator, pause } from "./helpers.ts"

const repoRoot = join(import.meta.dirname, "..", "..", "..")
const repl = join(repoRoot, "node_modules", ".bin", "repl")

let emulator: Emulator
let home: string
const started: Array<{ readonly kill: (signal: NodeJS.Signals) => boolean }> = []

/** As on a Mac with OrbStack: `orbctl` is whatever PATH finds first, here the emulator. */
const env = (extra: Record<string, string> = {}) => ({
  ...emulator.pathEnv,
  SKYREPL_HOME: home,
  SKYREPL_HEARTBEAT_INTERVAL: "250ms",
  SKYREPL_DEADMAN_TIMEOUT: "10s",
  NO_COLOR: "1",
  ...extra
})

const run = (args: ReadonlyArray<string>, extra: Record<string, string> = {}) =>
  execa(repl, args, { env: env(extra), reject: false, timeout: 60_000, stdin: "ignore" })

/** `orbctl list` through PATH, as a user would check. */
const replMachines = async (): Promise<ReadonlyArray<string>> => {
  const listed = await execa("orbctl", ["list"], { env: env(), reject: false })
  expect(listed.exitCode).toBe(0)
  return listed.stdout
    .split("\n")
    .map((line) => line.split(/\s+/)[0] ?? "")
    .filter((name) => name.startsWith("repl-"))
}

/** Starts `repl run --provider orbstack -c CMD --progress`; resolves with the instance once it runs. */
const startRun = (command: string, extra: Record<string, string> = {}) => {
  const child = execa(repl, ["run", "--provider", "orbstack", "-c", command, "--progress"], {
    env: env(extra),
    reject: false,
    stdin: "ignore"
  })
  started.push(child)
  const name = new Promise<string>((resolve, reject) => {
    let err = ""
    child.stderr?.on("data", (d: Buffer) => {
      err += d.toString()
      const match = /running (repl-[0-9a-z-]+)/.exec(err)
      if (match?.[1] !== undefined) resolve(match[1])
    })
    void child.then(() => reject(new Error(`repl exited before the run started: ${err}`)))
  })
  return { child, name }
}

beforeEach(() => {
  emulator = makeEmulator()
  home = mkdtempSync(join(tmpdir(), "skyrepl-orbstack-cli-"))
})

afterEach(async () => {
  for (const child of started.splice(0)) child.kill("SIGKILL")
  // Whatever a test left is ended through the product itself, then checked at the emulator;
  // the emulator deletes what is still there either way.
  await run(["orphans", "--reap", "--min-age", "0", "--own"])
  const machines = await replMachines()
  const processes = emulator.processes()
  await emulator.dispose()
  rmSync(home, { recursive: true, force: true })
  expect(machines).toEqual([])
  expect(processes).toEqual([])
})

describe("repl with the orbstack provider", () => {
  it("repl run --provider orbstack -c 'echo hello' prints hello and leaves no repl- VM", async () => {
    const result = await run(["run", "--provider", "orbstack", "-c", "echo hello"])
    expect(result.stderr).toBe("")
    expect(result.stdout).toBe("hello")
    expect(result.exitCode).toBe(0)
    expect(await replMachines()).toEqual([])
    expect(emulator.processes()).toEqual([])
  })

  it("a failing bootstrap is reported on the run, and the VM is ended", async () => {
    emulator.setFaults("no-python")
    const result = await run(["run", "--provider", "orbstack", "-c", "true"], { SKYREPL_BOOT_TIMEOUT: "2s" })
    expect(result.exitCode).toBe(1)
    expect(result.stderr).toContain("python3 not found")
    expect(result.stderr).toContain("/tmp/bootstrap.log")
    expect(result.stderr).toContain(`its console's last lines: "== skyrepl bootstrap of`)
    const runs = JSON.parse((await run(["run", "list", "--json"])).stdout) as Array<{ state: string; error: string | null }>
    expect(runs[0]?.state).toBe("failed")
    expect(runs[0]?.error).toContain("did not register")
    expect(runs[0]?.error).toContain("bootstrap of")
    expect(runs[0]?.error).toContain("/tmp/bootstrap.log")
    expect(await replMachines()).toEqual([])
  })

  it("snapshot create, list and delete", async () => {
    const { child, name } = startRun("sleep 600")
    const instance = await name
    // A name OrbStack cannot take is the caller's mistake: exit 2, one line, nothing cloned.
    const refused = await run(["snapshot", "create", instance, "--name", "Bad/name"])
    expect(refused.exitCode).toBe(2)
    expect(refused.stderr).toBe('repl: provider "orbstack": snapshot name "Bad/name" must be lower-case letters, digits and hyphens, at most 54 characters (it becomes the machine name replsnap-NAME)')
    expect((await emulator.machines()).map((m) => m.name)).toEqual([instance])
    const created = await run(["snapshot", "create", instance, "--name", "base", "--json"])
    expect(created.exitCode).toBe(0)
    expect(JSON.parse(created.stdout)).toMatchObject({ id: "replsnap-base", name: "base", provider: "orbstack", source: instance, state: "available" })
    const listed = JSON.parse((await run(["snapshot", "list", "--json"])).stdout) as Array<{ id: string }>
    expect(listed.map((s) => s.id)).toContain("replsnap-base")
    const deleted = await run(["snapshot", "delete", "replsnap-base", "--provider", "orbstack"])
    expect(deleted.stdout).toBe("deleted replsnap-base")
    expect((await emulator.machines()).map((m) => m.name)).toEqual([instance])
    child.kill("SIGINT")
    expect((await child).exitCode).toBe(130)
    expect(await replMachines()).toEqual([])
  })
})

describe("the cleanup guarantee with OrbStack, by breaking things", () => {
  it("SIGKILL of the controller mid-run: the next repl command after the lease TTL leaves no repl- VM", async () => {
    const { child, name } = startRun("sleep 600", { SKYREPL_LEASE_TTL: "1s" })
    const instance = await name
    child.kill("SIGKILL")
    await child
    // Nobody has ended it yet: the agent's dead-man window is 10 s here.
    expect(await replMachines()).toEqual([instance])
    await pause(1_500)
    const list = await run(["run", "list", "--json"], { SKYREPL_LEASE_TTL: "1s" })
    expect(list.exitCode).toBe(0)
    expect(await replMachines()).toEqual([])
    expect(emulator.processes()).toEqual([])
    expect((JSON.parse(list.stdout) as Array<{ state: string }>)[0]?.state).toBe("failed")
  })

  it("store deleted: repl orphans finds the VM, and --reap --min-age 0 --own leaves no repl- VM", async () => {
    const { child, name } = startRun("sleep 600")
    const instance = await name
    child.kill("SIGKILL")
    await child
    for (const file of ["state.db", "state.db-wal", "state.db-shm"]) rmSync(join(home, file), { force: true })

    const listed = JSON.parse((await run(["orphans", "--json"])).stdout) as { orphans: Array<{ name: string; provider: string; reason: string; action: string }> }
    expect(listed.orphans).toContainEqual(expect.objectContaining({ name: instance, provider: "orbstack", reason: "untracked", action: "listed" }))
    expect(await replMachines()).toEqual([instance])

    const reaped = await run(["orphans", "--reap", "--min-age", "0", "--own", "--json"])
    expect(reaped.exitCode).toBe(0)
    const report = JSON.parse(reaped.stdout) as { orphans: Array<{ name: string; action: string }> }
    expect(report.orphans).toContainEqual(expect.objectContaining({ name: instance, action: "reaped" }))
    await eventually("no repl- VM in orbctl list", async () => (await replMachines()).length === 0)
    expect(emulator.processes()).toEqual([])
  })

  it("without orbctl (Linux, no OrbStack): a launch fails clearly, and nothing is left to retry", async () => {
    const bare = { PATH: "/usr/bin:/bin" }
    const launched = await run(["run", "--provider", "orbstack", "-c", "true"], bare)
    expect(launched.exitCode).toBe(1)
    expect(launched.stderr).toContain("orbctl not found: OrbStack is macOS-only; install it and launch it once")
    const again = await run(["run", "list", "--json"], bare)
    expect(again.stderr).toBe("")
    expect((JSON.parse(again.stdout) as Array<{ state: string }>)[0]?.state).toBe("failed")
    const swept = await run(["orphans"], bare)
    expect(swept.exitCode).toBe(0)
    expect(swept.stderr).toContain("skipped provider orbstack: orbctl not found")
  })
})
