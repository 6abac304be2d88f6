import { DescribeInstancesCommand, EC2Client } from "@aws-sdk/client-ec2"
import { execa } from "execa"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { motoCredentials } from "../src/moto.ts"

// `repl` itself (the installed bin, as users run it) against the emulator script itself (what
// `npm run aws:emulator` runs): what a user without an AWS account sees.

// CI runs Node 20; the SDK's notice that future SDK versions will need Node 22 would otherwise
// be printed by every test file.
process.env["AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"] ??= "true"

const REGION = "us-east-1"
const repoRoot = join(import.meta.dirname, "..", "..", "..")
const repl = join(repoRoot, "node_modules", ".bin", "repl")
const bun = join(repoRoot, "node_modules", ".bin", "bun")

const startEmulator = (script: string) => execa(bun, [script], { cwd: repoRoot, reject: false, stdin: "ignore", buffer: true })

let emulator: ReturnType<typeof startEmulator>
let exported: Record<string, string> = {}
let dir: string
let ec2: EC2Client

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "skyrepl-aws-cli-"))
  const script = /^bun (\S+)$/.exec((JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts["aws:emulator"] ?? "")?.[1]
  if (script === undefined) throw new Error("package.json has no aws:emulator script running bun")
  emulator = startEmulator(join(repoRoot, script))
  // The script prints the lines to paste into another shell; read them as a user would.
  exported = await new Promise<Record<string, string>>((resolve, reject) => {
    let out = ""
    emulator.stdout?.on("data", (d: Buffer) => {
      out += d.toString()
      if (!out.includes("# then:")) return
      const vars: Record<string, string> = {}
      for (const [, key, value] of out.matchAll(/^export ([A-Z_]+)=(.*)$/gm)) if (key !== undefined && value !== undefined) vars[key] = value
      resolve(vars)
    })
    void emulator.then((r) => reject(new Error(`the emulator exited: ${r.stderr}`)))
  })
  ec2 = new EC2Client({ region: REGION, endpoint: exported["SKYREPL_AWS_ENDPOINT"] ?? "", credentials: motoCredentials, maxAttempts: 1 })
}, 60_000)

afterAll(async () => {
  ec2.destroy()
  emulator.kill("SIGINT")
  const result = await emulator
  rmSync(dir, { recursive: true, force: true })
  // Ctrl-C ends every sandbox and moto with them.
  expect(result.stderr).toContain("stopped; every sandbox ended and moto is gone")
  expect(result.exitCode).toBe(0)
  const url = exported["SKYREPL_AWS_ENDPOINT"] ?? ""
  await expect(fetch(`${url}/moto-api/`, { signal: AbortSignal.timeout(2_000) })).rejects.toThrow()
}, 60_000)

/** The environment `npm run aws:emulator` told us to export. */
const emulatorEnv = (): Record<string, string> => ({ ...exported })

const baseEnv = (): Record<string, string> => ({
  SKYREPL_HOME: join(dir, "home"),
  XDG_CACHE_HOME: join(dir, "cache"),
  AWS_CONFIG_FILE: join(dir, "no-aws-config"),
  AWS_SHARED_CREDENTIALS_FILE: join(dir, "no-aws-credentials"),
  AWS_EC2_METADATA_DISABLED: "true",
  SKYREPL_HEARTBEAT_INTERVAL: "250ms",
  SKYREPL_DEADMAN_TIMEOUT: "10s",
  NO_COLOR: "1"
})

const run = (args: ReadonlyArray<string>, env: Record<string, string> = emulatorEnv()) =>
  execa(repl, args, { env: { ...baseEnv(), ...env }, extendEnv: true, reject: false, timeout: 60_000, stdin: "ignore" })

const instanceNamed = async (name: string) => {
  const out = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: "tag:Name", Values: [name] }] }))
  return out.Reservations?.flatMap((r) => r.Instances ?? [])[0]
}

const eventually = async (what: string, check: () => Promise<boolean>, timeoutMs = 15_000) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`timed out waiting for: ${what}`)
}

describe("repl --provider aws on the emulator", () => {
  it("repl run prints hello, and the instance is terminated in moto afterwards", async () => {
    const result = await run(["run", "--provider", "aws", "-c", "echo hello", "--json"])
    expect(result.stderr).toBe("")
    const events = result.stdout.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(events[0]).toMatchObject({ type: "output", stream: "stdout", data: "hello\n" })
    const exit = events.at(-1)
    expect(exit).toMatchObject({ type: "exit", state: "succeeded", exitCode: 0 })
    const name = typeof exit?.["instance"] === "string" ? exit["instance"] : ""
    await eventually("the instance is terminated in moto", async () => (await instanceNamed(name))?.State?.Name === "terminated")

    const plain = await run(["run", "--provider", "aws", "-c", "echo hello"])
    expect(plain.stdout).toBe("hello")
    expect(plain.exitCode).toBe(0)
  }, 60_000)

  it("repl run passes the command's exit status through", async () => {
    expect((await run(["run", "--provider", "aws", "-c", "exit 7"])).exitCode).toBe(7)
  }, 60_000)

  it("with the database deleted, repl orphans --provider aws finds the instance, and --reap ends it", async () => {
    const child = execa(repl, ["run", "--provider", "aws", "-c", "sleep 600", "--progress"], {
      env: { ...baseEnv(), ...emulatorEnv() },
      reject: false,
      stdin: "ignore"
    })
    const name = await new Promise<string>((resolve, reject) => {
      let err = ""
      child.stderr?.on("data", (d: Buffer) => {
        err += d.toString()
        const match = /running (repl-[0-9a-z-]+)/.exec(err)
        if (match?.[1] !== undefined) resolve(match[1])
      })
      void child.then(() => reject(new Error(`repl exited before the run started: ${err}`)))
    })
    // The controller dies without a chance to clean up, and the store goes with it.
    child.kill("SIGKILL")
    await child
    for (const file of ["state.db", "state.db-wal", "state.db-shm"]) rmSync(join(dir, "home", file), { force: true })
    expect((await instanceNamed(name))?.State?.Name).toBe("running")

    const listed = await run(["orphans", "--provider", "aws", "--json"])
    expect(listed.exitCode).toBe(0)
    const report = JSON.parse(listed.stdout) as { orphans: Array<{ name: string; reason: string; action: string; region: string }> }
    expect(report.orphans).toContainEqual(expect.objectContaining({ name, reason: "untracked", action: "listed", region: REGION }))

    const reaped = await run(["orphans", "--provider", "aws", "--reap", "--min-age", "0", "--own", "--json"])
    const after = JSON.parse(reaped.stdout) as { orphans: Array<{ name: string; action: string }> }
    expect(after.orphans).toContainEqual(expect.objectContaining({ name, action: "reaped" }))
    await eventually("the instance is terminated in moto", async () => (await instanceNamed(name))?.State?.Name === "terminated")
  }, 60_000)

  it("repl snapshot create, list and delete", async () => {
    const child = execa(repl, ["run", "--provider", "aws", "-c", "sleep 600", "--progress"], {
      env: { ...baseEnv(), ...emulatorEnv() },
      reject: false,
      stdin: "ignore"
    })
    try {
      const name = await new Promise<string>((resolve, reject) => {
        let err = ""
        child.stderr?.on("data", (d: Buffer) => {
          err += d.toString()
          const match = /running (repl-[0-9a-z-]+)/.exec(err)
          if (match?.[1] !== undefined) resolve(match[1])
        })
        void child.then(() => reject(new Error(`repl exited before the run started: ${err}`)))
      })
      const created = await run(["snapshot", "create", name, "--name", "cli-snap", "--json"])
      expect(created.exitCode).toBe(0)
      const snapshot = JSON.parse(created.stdout) as { id: string; source: string; region: string }
      expect(snapshot).toMatchObject({ source: name, region: REGION })
      const listed = await run(["snapshot", "list", "--provider", "aws", "--json"])
      expect((JSON.parse(listed.stdout) as Array<{ id: string }>).map((s) => s.id)).toContain(snapshot.id)
      const deleted = await run(["snapshot", "delete", snapshot.id, "--provider", "aws", "--region", REGION])
      expect(deleted.stdout).toBe(`deleted ${snapshot.id}`)
      const again = await run(["snapshot", "list", "--provider", "aws", "--json"])
      expect((JSON.parse(again.stdout) as Array<{ id: string }>).map((s) => s.id)).not.toContain(snapshot.id)
    } finally {
      child.kill("SIGINT")
      expect((await child).exitCode).toBe(130)
    }
  }, 60_000)

  it("against real AWS (no endpoint), a loopback control-plane URL is refused before anything starts", async () => {
    const result = await run(["run", "--provider", "aws", "-c", "true"], {
      AWS_ACCESS_KEY_ID: "AKIAEXAMPLEEXAMPLE00",
      AWS_SECRET_ACCESS_KEY: "not-a-secret",
      AWS_REGION: REGION
    })
    expect(result.exitCode).not.toBe(0)
    expect(result.stderr).toContain("loopback")
    expect(result.stderr).toContain("SKYREPL_CONTROL_PLANE_URL")
  }, 60_000)

  it("without AWS configured, repl orphans skips aws instead of failing, saying what is missing", async () => {
    const fresh = join(dir, "fresh-home")
    const noRegion = await run(["orphans"], { SKYREPL_HOME: fresh })
    expect(noRegion.exitCode).toBe(0)
    expect(noRegion.stderr).toContain("skipped provider aws: no AWS region is configured")
    const noCredentials = await run(["orphans"], { SKYREPL_HOME: fresh, AWS_REGION: REGION })
    expect(noCredentials.exitCode).toBe(0)
    expect(noCredentials.stderr).toContain("skipped provider aws: no AWS credentials found")
  }, 60_000)
})
