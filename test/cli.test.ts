import { SqliteStore } from "@skyrepl/store-sqlite"
import { Effect } from "effect"
import { execa } from "execa"
import { spawn, spawnSync } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { type AddressInfo, createServer, type Socket } from "node:net"
import { delimiter, join } from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { eventually, processesOf, processesRunning, removeHome, tempHome } from "./support.ts"

const repoRoot = join(import.meta.dirname, "..")
const repl = join(repoRoot, "node_modules", ".bin", "repl")

let home: string
const started: Array<{ readonly kill: (signal: NodeJS.Signals) => boolean }> = []
beforeEach(() => {
  home = tempHome()
})
afterEach(async () => {
  for (const child of started.splice(0)) child.kill("SIGKILL")
  // Whatever a test left running is ended through the product itself, then checked in /proc.
  await run(["orphans", "--reap", "--min-age", "0", "--own"])
  removeHome(home)
})

const env = (extra: Record<string, string> = {}) => ({
  SKYREPL_HOME: home,
  SKYREPL_HEARTBEAT_INTERVAL: "250ms",
  SKYREPL_DEADMAN_TIMEOUT: "10s",
  NO_COLOR: "1",
  ...extra
})

/** The OrbStack emulator as `orbctl` on PATH, its state in this test's home. */
const orbstackEnv = (): Record<string, string> => ({
  ORBCTL_EMULATOR_HOME: join(home, "orbctl-emulator"),
  PATH: `${join(repoRoot, "packages", "provider-orbstack", "emulator")}${delimiter}${process.env["PATH"] ?? ""}`
})

const run = (args: ReadonlyArray<string>, extra: Record<string, string> = {}) =>
  execa(repl, args, { env: env(extra), reject: false, timeout: 60_000, stdin: "ignore" })

/** Starts `repl run -c CMD --progress` and resolves with the instance name once it runs. */
const startRun = (command: string, extra: Record<string, string> = {}, args: ReadonlyArray<string> = []) => {
  const child = execa(repl, ["run", "-c", command, "--progress", ...args], { env: env(extra), reject: false, stdin: "ignore", buffer: true })
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

const lines = (text: string) => text.split("\n").filter((l) => l !== "")

describe("repl run", () => {
  it("prints the command's output and exits 0", async () => {
    const result = await run(["run", "-c", "echo hello"])
    expect(result.stdout).toBe("hello")
    expect(result.exitCode).toBe(0)
  })

  it("exits with the command's exit code", async () => {
    expect((await run(["run", "-c", "exit 7"])).exitCode).toBe(7)
  })

  it("a command killed by signal N exits 128+N, for every signal", async () => {
    // USR1 (10 here) and ALRM (14) were once missing from a table of their own, which gave 128.
    for (const [signal, status] of [["USR1", 138], ["ALRM", 142], ["TERM", 143]] as const) {
      expect((await run(["run", "-c", `kill -${signal} $$`])).exitCode).toBe(status)
    }
  })

  it("passes --env to the command", async () => {
    const result = await run(["run", "-c", "echo $FOO", "--env", "FOO=bar"])
    expect(result.stdout).toBe("bar")
  })

  it("writes the command's stderr to stderr", async () => {
    const result = await run(["run", "-c", "echo out; echo err >&2"])
    expect(result.stdout).toBe("out")
    expect(result.stderr).toBe("err")
  })

  it("a relative SKYREPL_HOME is taken from the directory repl started in", async () => {
    const result = await execa(repl, ["run", "-c", "echo ok"], { env: env({ SKYREPL_HOME: "relative-home" }), cwd: home, reject: false, timeout: 60_000, stdin: "ignore" })
    expect([result.exitCode, result.stdout]).toEqual([0, "ok"])
    expect(existsSync(join(home, "relative-home", "state.db"))).toBe(true)
    await execa(repl, ["orphans", "--reap", "--min-age", "0", "--own"], { env: env({ SKYREPL_HOME: "relative-home" }), cwd: home, reject: false })
  })

  it("--max-duration stops the run with exit 124", async () => {
    const result = await run(["run", "-c", "sleep 600", "--max-duration", "1s"])
    expect(result.exitCode).toBe(124)
    expect(result.stderr).toContain("--max-duration")
    // A command that ends itself when told to (exit 0 or 3 on SIGTERM) still ran out of time.
    for (const status of [0, 3]) {
      const trapped = await run(["run", "-c", `trap 'exit ${status}' TERM; sleep 600 & wait`, "--max-duration", "1s"])
      expect([status, trapped.exitCode]).toEqual([status, 124])
    }
  })

  it("--json prints JSON Lines ending with the exit", async () => {
    const result = await run(["run", "-c", "echo hi", "--json"])
    const events = lines(result.stdout).map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(events[0]).toMatchObject({ type: "output", stream: "stdout", offset: 0, bytes: 3, data: "hi\n" })
    expect(events.at(-1)).toMatchObject({ type: "exit", state: "succeeded", exitCode: 0 })
  })

  it("--json ends with an error object when the command fails before the run's end: a bad flag, a launch that fails", async () => {
    const usage = await run(["run", "-c", "echo hi", "--env", "NOEQUALS", "--json"])
    expect(usage.exitCode).toBe(2)
    expect(lines(usage.stdout).map((l) => JSON.parse(l) as unknown)).toEqual([
      { type: "error", message: expect.stringContaining("--env"), status: 2 }
    ])
    expect(usage.stderr).toBe(`repl: ${(JSON.parse(usage.stdout) as { message: string }).message}`)
    // An interpreter that cannot start: the instance ends before its agent registers.
    const broken = join(home, "broken-python")
    writeFileSync(broken, "#!/bin/sh\necho 'cannot start' >&2\nexit 1\n", { mode: 0o755 })
    const failed = await run(["run", "-c", "echo hi", "--json"], { SKYREPL_PYTHON: broken, SKYREPL_HEARTBEAT_INTERVAL: "1s" })
    expect(failed.exitCode).toBe(1)
    expect(lines(failed.stdout).map((l) => JSON.parse(l) as unknown)).toEqual([
      { type: "error", message: expect.stringContaining('ended before its agent registered; its console\'s last lines: "cannot start"'), status: 1 }
    ])
    // attach --json of a run that is not there.
    const unknown = await run(["run", "attach", "nosuchrun", "--json"])
    expect(unknown.exitCode).not.toBe(0)
    expect(lines(unknown.stdout).map((l) => (JSON.parse(l) as { type: string }).type)).toEqual(["error"])
  })

  it("--json ends with an error object for a usage error clipanion's parser finds too, before any command runs", async () => {
    for (const args of [
      ["run", "--json", "-c", "true", "--bogus"],
      ["run", "--json", "-c"],
      ["run", "--json"],
      ["run", "attach", "--json"],
      ["run", "attach", "x", "--json", "--from-stdout"]
    ]) {
      const result = await run(args)
      expect([args, result.exitCode]).toEqual([args, 2])
      expect(lines(result.stderr)).toHaveLength(1)
      expect([args, lines(result.stdout).map((l) => JSON.parse(l) as unknown)]).toEqual([
        args,
        [{ type: "error", message: result.stderr.replace(/^repl: /, ""), status: 2 }]
      ])
    }
    // Without --json, or with it only after "--" (an argument there) or undone by --no-json, nothing.
    for (const args of [["run", "-c", "true", "--bogus"], ["run", "-c", "true", "--", "--json"], ["run", "--json", "--no-json", "-c", "true", "--bogus"]]) {
      const result = await run(args)
      expect([args, result.exitCode, result.stdout]).toEqual([args, 2, ""])
    }
  })

  it("--json keeps a character split between two chunks whole, and counts each chunk's bytes", async () => {
    // "€" is three bytes; the first write ends after its first byte, and the pause makes the
    // two writes two chunks.
    const command = `printf 'ab\\342'; sleep 0.5; printf '\\202\\254cd'`
    const result = await run(["run", "-c", command, "--json"])
    const output = lines(result.stdout)
      .map((l) => JSON.parse(l) as { type: string; offset: number; bytes: number; data: string })
      .filter((e) => e.type === "output")
    expect(output.map((e) => e.data).join("")).toBe("ab€cd")
    expect(output.map((e) => [e.offset, e.bytes])).toEqual([
      [0, 3],
      [3, 4]
    ])
    // attach --json gives the same, from the store.
    const runId = (JSON.parse(lines(result.stdout).at(-1)!) as { runId: string }).runId
    const attachedEvents = lines((await run(["run", "attach", runId, "--json"])).stdout).map(
      (l) => JSON.parse(l) as { type: string; runId: string; data: string; bytes: number }
    )
    const attached = attachedEvents.filter((e) => e.type === "output")
    expect(attached.every((e) => e.runId === runId)).toBe(true)
    expect(attached.map((e) => e.data).join("")).toBe("ab€cd")
    expect(attached.reduce((n, e) => n + e.bytes, 0)).toBe(7)
    // …and ends with the run's exit, as repl run --json does.
    expect(attachedEvents.at(-1)).toEqual({ type: "exit", runId, state: "succeeded", exitCode: 0, signal: null, error: null })
    expect(attachedEvents).toHaveLength(attached.length + 1)
  })

  it("help or the version into a pipe whose reader is gone ends quietly, 141, with no stack trace", async () => {
    // The version too, answered before the engine loads (and by clipanion after `--`): it ended 0.
    for (const help of ["snapshot delete --help", "run --help", "snapshot --help", "--version", "-v", "--version --"]) {
      const piped = await execa("bash", ["-c", `set -o pipefail; (sleep 0.3; '${repl}' ${help}) | true`], { env: env(), reject: false, timeout: 60_000 })
      expect([help, piped.exitCode, piped.stderr]).toEqual([help, 141, ""])
    }
  })

  it("a reader that goes away (| head) stops the run quietly, with no stack trace", async () => {
    const piped = await execa("bash", ["-c", `set -o pipefail; '${repl}' run -c yes | head -2`], { env: env(), reject: false, timeout: 60_000 })
    expect(piped.stdout).toBe("y\ny")
    expect(piped.exitCode).toBe(141)
    expect(piped.stderr).toBe("")
    const runs = JSON.parse((await run(["run", "list", "--json"])).stdout) as Array<{ state: string; instanceId: string }>
    expect(runs[0]?.state).toBe("cancelled")
    const live = JSON.parse((await run(["instance", "list", "--json"])).stdout) as Array<unknown>
    expect(live).toEqual([])
  })

  it("a reader that goes away after the command's work is done still makes it 141: attach of a long finished output | head", async () => {
    const made = await run(["run", "-c", "seq 1 200000", "--json"])
    const runId = (JSON.parse(lines(made.stdout).at(-1) ?? "{}") as { runId?: string }).runId ?? ""
    expect(runId).not.toBe("")
    for (const flags of ["", "--json"]) {
      const piped = await execa("bash", ["-c", `set -o pipefail; '${repl}' run attach ${runId} ${flags} | head -c 1 >/dev/null`], { env: env(), reject: false, timeout: 60_000 })
      expect([flags, piped.exitCode, piped.stderr]).toEqual([flags, 141, ""])
    }
  })

  it("output that cannot be written (a full disk) is one line on stderr and exit 1, also when it was queued; the instance is ended", async () => {
    // `--version` ended 0 with nothing said, so a script took an empty version for the real one.
    for (const args of ["run -c 'echo hi'", "run -c 'seq 1 100000'", "run list", "--help", "run --help", "--version", "-v", "--version --"]) {
      const full = await execa("bash", ["-c", `'${repl}' ${args} >/dev/full`], { env: env(), reject: false, timeout: 60_000, stdin: "ignore" })
      expect([args, full.exitCode]).toEqual([args, 1])
      expect(lines(full.stderr)).toEqual([expect.stringMatching(/^repl: cannot write to stdout: ENOSPC/)])
    }
    const live = JSON.parse((await run(["instance", "list", "--json"])).stdout) as Array<unknown>
    expect(live).toEqual([])
  })

  it("a slow reader gets every byte: the CLI exits only once its output is written", async () => {
    // 3 MB is far past what the CLI writes directly; the reader starts late, so most of it is
    // still queued for the pipe when the run ends (Bun's process.exit used to drop it).
    const piped = await execa("bash", ["-c", `set -o pipefail; '${repl}' run -c 'yes | head -c 3000000' | (sleep 1; wc -c)`], {
      env: env(),
      reject: false,
      timeout: 60_000
    })
    expect(piped.stderr).toBe("")
    expect(piped.exitCode).toBe(0)
    expect(piped.stdout.trim()).toBe("3000000")
  })

  it("a reader that stops reading (| less) does not make the CLI hold the whole output in memory", async () => {
    // 400 MB of output, and nothing reads the CLI's stdout. The output waits in the store, not in
    // the CLI: it used to be read from the store in pages of up to 512 chunks (of up to 16 MiB)
    // and queued for stdout, so `repl run -c 'cat big.log' | less` held all of it.
    const size = 400_000_000
    /** Starts `repl ARGS` with a stdout nobody reads until `drain` (not execa: it reads the pipe even with `buffer: false`). */
    const stalled = (args: ReadonlyArray<string>) => {
      const child = spawn(repl, args, { env: { ...process.env, ...env() }, stdio: ["ignore", "pipe", "inherit"] })
      started.push(child)
      const closed = new Promise<number | null>((resolve) => child.on("close", resolve))
      const resident = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))?.[1]) * 1024
      const drain = async () => {
        let received = 0
        child.stdout.on("data", (data: Buffer) => {
          received += data.length
        })
        return [await closed, received]
      }
      return { resident, drain }
    }
    /** Waits up to 20 s for `child`'s resident memory to fall below `bytes`; fails with the last reading. */
    const settlesBelow = async (child: { readonly resident: () => number }, bytes: number) => {
      let last = 0
      await eventually("resident memory to settle", () => (last = child.resident()) < bytes, 20_000).catch(() => undefined)
      expect(last).toBeLessThan(bytes)
    }
    const running = stalled(["run", "-c", `head -c ${size} /dev/zero`])
    let runs: Array<{ readonly id: string; readonly state: string; readonly error: string | null }> = []
    // Any end, so that a run that failed says how (state and error) instead of timing out; and
    // a run that never ends says where it stood.
    const ended = ["succeeded", "failed", "cancelled", "timed_out"]
    await eventually(
      "the run to end",
      async () => (runs = JSON.parse((await run(["run", "list", "--json"])).stdout) as typeof runs).some((r) => ended.includes(r.state)),
      60_000
    ).catch((error: unknown) => {
      throw new Error(`${error instanceof Error ? error.message : String(error)}; runs: ${JSON.stringify(runs)}`)
    })
    expect(runs.map((r) => [r.state, r.error])).toEqual([["succeeded", null]])
    // Every byte is in the store now and none was read: what the CLI holds is what it kept of them.
    // Ingesting them leaves garbage until Bun's collector runs, which on a loaded machine can be
    // seconds later, so the check waits for it; kept output never becomes garbage.
    await settlesBelow(running, size / 2)
    expect(await running.drain()).toEqual([0, size])
    // Replaying the ended run: all of its output is there to read at once.
    const replay = stalled(["run", "attach", runs[0]!.id])
    await new Promise((resolve) => setTimeout(resolve, 2_000))
    await settlesBelow(replay, size / 2)
    expect(await replay.drain()).toEqual([0, size])
  }, 120_000)

  it.each(["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGXCPU"] as const)("%s cancels the run, terminates the instance and exits 130", async (signal) => {
    const { child, name } = startRun("sleep 600")
    const instance = await name
    expect((await processesOf(instance)).length).toBeGreaterThan(0)
    child.kill(signal)
    const result = await child
    expect(result.exitCode).toBe(130)
    expect(lines(result.stderr).at(-1)).toBe("repl: interrupted; the instance was terminated")
    expect(await processesOf(instance)).toEqual([])
  })

  it("with repl killed outright, the dead-man switch of a process sandbox also ends what left the run's group (setsid)", async () => {
    const { child, name } = startRun("setsid sleep 1111 & echo hi; sleep 600", { SKYREPL_DEADMAN_TIMEOUT: "2s" }, ["--spec", "process"])
    const instance = await name
    await eventually("the detached sleep runs", async () => (await processesOf(instance)).length >= 3)
    child.kill("SIGKILL")
    // No repl runs again here before the check: only the agent can end them.
    await eventually(`${instance} gone`, async () => (await processesOf(instance)).length === 0, 20_000)
  })

  it("with repl killed outright, the dead-man switch of a process sandbox also ends a daemon that cleared its environment (env -i setsid)", async () => {
    // Unmarked once `env -i` has run: it is known by its command line, unique to this test.
    const daemon = `sleep 1112.${process.pid}`
    const daemons = () => processesRunning(daemon)
    try {
      const { child, name } = startRun(`env -i setsid ${daemon} </dev/null >/dev/null 2>&1 & echo hi; sleep 600`, { SKYREPL_DEADMAN_TIMEOUT: "2s" }, ["--spec", "process"])
      const instance = await name
      await eventually("the daemon runs", () => daemons().length === 1)
      child.kill("SIGKILL")
      await eventually(`${instance} gone`, async () => (await processesOf(instance)).length === 0, 20_000)
      await eventually("the daemon gone", () => daemons().length === 0, 5_000)
    } finally {
      for (const pid of daemons()) process.kill(pid, "SIGKILL")
    }
  })

  it("Ctrl-C pressed twice still ends the instance: the second only says it is being ended", async () => {
    // A command that ignores the agent's SIGTERM keeps the cleanup going for a while.
    const { child, name } = startRun("trap '' TERM INT; sleep 600")
    const instance = await name
    child.kill("SIGINT")
    await new Promise((r) => setTimeout(r, 300))
    // Before, the first handler was a once: the second Ctrl-C killed repl mid-cleanup.
    child.kill("SIGINT")
    const result = await child
    expect(result.exitCode).toBe(130)
    expect(result.stderr).toContain("repl: still ending the instance")
    expect(await processesOf(instance)).toEqual([])
  })

  it("a closed terminal ends the instance and exits 130, though writes to the terminal fail as well", async () => {
    // The terminal's side is closed as a window or an SSH session closes: its session is hung
    // up, and the output still being written to it fails (EIO). That failure used to decide the
    // exit status (1), or the line saying the interruption threw.
    const terminal = [
      "import os, pty, re, select, sys, time",
      "pid, master = pty.fork()",
      "if pid == 0:",
      "    os.execv(sys.argv[1], sys.argv[1:])",
      "shown, deadline = b'', time.time() + 30",
      "while shown.count(b'tick') < 3 and time.time() < deadline:",
      "    if select.select([master], [], [], 1)[0]:",
      "        shown += os.read(master, 65536)",
      "found = re.search(rb'running (repl-[0-9a-z-]+)', shown)",
      "os.close(master)",
      "_, status = os.waitpid(pid, 0)",
      "print(found.group(1).decode() if found else '', os.waitstatus_to_exitcode(status))"
    ].join("\n")
    const result = await execa("python3", ["-c", terminal, repl, "run", "--progress", "-c", "while true; do echo tick; sleep 0.05; done"], {
      env: env(),
      reject: false,
      timeout: 60_000
    })
    const [instance, status] = result.stdout.trim().split(" ")
    expect(instance).toMatch(/^repl-/)
    expect(status).toBe("130")
    expect(await processesOf(instance ?? "")).toEqual([])
    const instances = await Effect.runPromise(
      Effect.scoped(Effect.flatMap(SqliteStore.makeScoped({ filename: join(home, "state.db") }), (store) => store.listInstances()))
    )
    expect(instances.map((i) => [i.name, i.state])).toEqual([[instance, "terminated"]])
  })

  it("a repl run attach that reaps its run's instance (its owner killed) finishes the termination before it exits", async () => {
    const short = { SKYREPL_LEASE_TTL: "3s" }
    const { child, name } = startRun("while true; do echo tick; sleep 0.5; done", short)
    const instance = await name
    const [owned] = JSON.parse((await run(["run", "list", "--json"], short)).stdout) as Array<{ id: string }>
    const attach = execa(repl, ["run", "attach", owned!.id], { env: env(short), reject: false, stdin: "ignore" })
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    child.kill("SIGKILL")
    const result = await attach
    expect([result.exitCode, lines(result.stderr)]).toEqual([
      1,
      [`repl: run ${owned!.id} failed: the controller that owned this instance stopped renewing its lease`]
    ])
    // Read from the store itself, since every repl command would reap again and finish what was left.
    const instances = await Effect.runPromise(
      Effect.scoped(Effect.flatMap(SqliteStore.makeScoped({ filename: join(home, "state.db") }), (store) => store.listInstances()))
    )
    expect(instances.map((i) => [i.name, i.state])).toEqual([[instance, "terminated"]])
    expect(await processesOf(instance)).toEqual([])
  })

  it("Ctrl-C of repl run attach detaches: exit 130, the run goes on, and says so", async () => {
    const { name } = startRun("sleep 600")
    const instance = await name
    const runs = JSON.parse((await run(["run", "list", "--json"])).stdout) as Array<{ id: string; state: string }>
    const runId = runs[0]?.id ?? ""
    const attached = execa(repl, ["run", "attach", runId], { env: env(), reject: false, stdin: "ignore" })
    await new Promise((r) => setTimeout(r, 1_000))
    attached.kill("SIGINT")
    const result = await attached
    expect(result.exitCode).toBe(130)
    expect(lines(result.stderr)).toEqual(["repl: detached; the run goes on (repl run cancel ends it)"])
    const after = JSON.parse((await run(["run", "list", "--json"])).stdout) as Array<{ id: string; state: string }>
    expect(after.find((r) => r.id === runId)?.state).toBe("running")
    expect((await processesOf(instance)).length).toBeGreaterThan(0)
  })
})

describe("bad input", () => {
  const cases: ReadonlyArray<[string, ReadonlyArray<string>]> = [
    ["an invalid spec", ["run", "-c", "true", "--spec", "gpu:h100"]],
    ["an unknown provider", ["run", "-c", "true", "--provider", "nimbus"]],
    ["an unknown flag", ["run", "-c", "true", "--bogus"]],
    ["a missing command", ["run"]],
    ["a duration without a unit", ["run", "-c", "true", "--max-duration", "30"]],
    ["a malformed --env", ["run", "-c", "true", "--env", "NOEQUALS"]],
    ["an --env of a variable SkyREPL sets itself", ["run", "-c", "true", "--env", "SKYREPL_INSTANCE=x"]],
    ["an unknown command", ["launch-rockets"]],
    ["an empty command", ["run", "-c", ""]],
    ["a zero --max-duration", ["run", "-c", "true", "--max-duration", "0s"]],
    // Every other command checks its flags before the store too (opening it also reaps).
    ["an unknown run state", ["run", "list", "--state", "bogus"]],
    ["a --limit that is not a count", ["run", "list", "--limit", "abc"]],
    ["a negative --limit", ["run", "list", "--limit", "-1"]],
    ["a --limit with no value", ["run", "list", "--limit"]],
    ["an empty --limit", ["run", "list", "--limit", ""]],
    ["a --limit past any count", ["run", "list", "--limit", "99999999999999999999"]],
    ["a --from-stdout in another notation", ["run", "attach", "x", "--from-stdout", "1e3"]],
    ["an unknown allocation state", ["allocation", "list", "--state", "bogus"]],
    ["a --min-age without a unit", ["orphans", "--min-age", "5"]],
    ["a --keep that cannot be an instance's name", ["orphans", "--reap", "--keep", "mwu3fvi7jhebqh"]],
    ["orphans of an unknown provider", ["orphans", "--provider", "nimbus"]],
    ["a --from-stderr that is not a count", ["run", "attach", "x", "--from-stderr", "abc"]],
    ["snapshots of an unknown provider", ["snapshot", "list", "--provider", "nimbus"]],
    ["deleting a snapshot at an unknown provider", ["snapshot", "delete", "x", "--provider", "nimbus"]],
    ["snapshot delete without --provider", ["snapshot", "delete", "x"]],
    ["snapshots of a provider that has none", ["snapshot", "list", "--provider", "local"]],
    ["deleting a snapshot at a provider that has none", ["snapshot", "delete", "x", "--provider", "local"]],
    ["deleting a snapshot in a region that is not a region's name", ["snapshot", "delete", "ami-12345678", "--provider", "aws", "--region", "Not A Region"]],
    ["deleting a snapshot with a region at a provider that has none", ["snapshot", "delete", "replsnap-x", "--provider", "orbstack", "--region", "x"]],
    ["deleting a snapshot whose id is not an AMI id", ["snapshot", "delete", "x", "--provider", "aws", "--region", "us-east-1"]],
    ["deleting a snapshot whose id is not a SkyREPL clone's", ["snapshot", "delete", "repl-foo", "--provider", "orbstack"]],
    ["a command group alone", ["instance"]],
    ["a region that is not a region's name", ["run", "-c", "true", "--provider", "aws", "--region", "mars-1"]]
  ]
  it.each(cases)("%s: one line on stderr, exit 2, nothing written, nothing started", async (_label, args) => {
    const before = readdirSync("/proc").length
    const result = await run(args)
    expect(result.exitCode).toBe(2)
    expect(lines(result.stderr)).toHaveLength(1)
    expect(result.stderr).toMatch(/^repl: /)
    expect(result.stderr).not.toMatch(/\bat .*\.ts:\d+/)
    expect(existsSync(join(home, "state.db"))).toBe(false)
    expect(existsSync(join(home, "instances"))).toBe(false)
    expect(before).toBeGreaterThan(0)
  })

  it("an agent endpoint that cannot listen says where it tried, and records nothing", async () => {
    // Bun's own words for a host name that does not resolve are "ENOENT: no such file or
    // directory" or "Is port 0 in use?", which said nothing of SKYREPL_HUB_HOST.
    const result = await run(["run", "-c", "true"], { SKYREPL_HUB_HOST: "nonexistent.invalid" })
    expect(result.exitCode).toBe(1)
    expect(lines(result.stderr)).toEqual([expect.stringMatching(/^repl: agent endpoint: cannot listen on nonexistent\.invalid:0: /)])
    expect((await run(["run", "list", "--json"])).stdout).toBe("[]")
  })

  it("an argument that is not UTF-8 is refused, not run with U+FFFD in place of its bytes", async () => {
    // The runtime decodes argv lossily: `echo \377` used to run as `echo �`, exit 0.
    const bytes = await execa("bash", ["-c", `'${repl}' run -c "$(printf 'echo \\377')"`], { env: env(), reject: false, timeout: 60_000, stdin: "ignore" })
    expect([bytes.exitCode, bytes.stdout, lines(bytes.stderr)]).toEqual([2, "", ['repl: argument 3 ("echo \uFFFD") is not UTF-8 text, so it cannot be passed on as given']])
    expect(existsSync(join(home, "state.db"))).toBe(false)
    // A U+FFFD that was typed is text like the rest.
    const typed = await run(["run", "-c", "echo \uFFFD"])
    expect([typed.exitCode, typed.stdout]).toEqual([0, "\uFFFD"])
  })

  it("a value with a newline or an escape sequence is quoted whole on one line, escaped, not cut short or sent to the terminal", async () => {
    // The line was cut at the value's newline (`unknown run state "x`), and an escape sequence
    // in a run id reached the terminal as one.
    for (const [args, status, line] of [
      [["run", "list", "--state", "x\ny"], 2, 'repl: --state: unknown run state "x\\ny" (one of pending, provisioning, running, succeeded, failed, cancelled, timed_out)'],
      [["run", "-c", "true", "--env", "A\tB=1"], 2, 'repl: --env expects KEY=VALUE with KEY made of letters, digits and _ (got "A\\tB=1")'],
      [["a\nb"], 2, `repl: unknown command "a\\nb" (see 'repl --help')`],
      [["run", "attach", "\u001b[31mred"], 1, 'repl: no run with id "\\x1b[31mred"'],
      [["snapshot", "create", "a\nb"], 1, 'repl: no instance or run named "a\\nb"']
    ] as const) {
      const result = await run(args)
      expect([args, result.exitCode, result.stderr]).toEqual([args, status, line])
    }
    // --json's error object says the same words as the line on stderr.
    const json = await run(["run", "--json", "-c", "true", "--spec", "a\nb"])
    const error = JSON.parse(json.stdout) as { message: string; status: number }
    expect([json.exitCode, error.status, `repl: ${error.message}`]).toEqual([2, 2, json.stderr])
    expect(error.message).toMatch(/^the local provider does not know the spec "a\\nb"; /)
    expect((await run(["run", "list", "--json"])).stdout).toBe("[]")
  })

  it("a flag's value that starts with \"-\" is named, with the = form that passes it to the command's own check", async () => {
    expect((await run(["run", "list", "--limit", "-1"])).stderr).toBe('repl: --limit needs a value; write --limit=-1 for one that starts with "-"')
    expect((await run(["run", "list", "--limit"])).stderr).toBe("repl: --limit needs a value for 'repl run list' (see 'repl run list --help')")
    expect((await run(["run", "-c"])).stderr).toBe("repl: -c needs a value for 'repl run' (see 'repl run --help')")
    expect((await run(["run", "list", "--limit=-1"])).stderr).toBe('repl: --limit expects a whole number (got "-1")')
    // Any value that starts with a single "-", not only a number; "--" starts a flag.
    for (const [args, line] of [
      [["run", "-c", "-x"], 'repl: -c needs a value; write -c=-x for one that starts with "-"'],
      [["run", "-c", "true", "--spec", "-foo"], 'repl: --spec needs a value; write --spec=-foo for one that starts with "-"'],
      [["run", "-c", "true", "--env", "A=1", "--env", "-X=1"], 'repl: --env needs a value; write --env=-X=1 for one that starts with "-"'],
      [["run", "-c", "-x y"], `repl: -c needs a value; write -c='-x y' for one that starts with "-"`],
      [["run", "list", "--limit", "--json"], "repl: --limit needs a value for 'repl run list' (see 'repl run list --help')"]
    ] as const) {
      const result = await run(args)
      expect([args, result.exitCode, result.stderr]).toEqual([args, 2, line])
    }
    // The = form the hint names runs that command: the shell takes it as a command, not as an
    // option of its own (it said "-c requires an argument").
    const dashed = await run(["run", "-c=-x"])
    expect(dashed.exitCode).toBe(127)
    expect(dashed.stderr).toMatch(/-x: (command )?not found$/)
  })

  it("a malformed provider variable skips that provider in sweeps and listings of every provider, and is a usage error where it is named", async () => {
    const bad = { SKYREPL_AWS_ENDPOINT: "notaurl" }
    const named = 'SKYREPL_AWS_ENDPOINT: "notaurl" is not an http(s) URL'
    const swept = await run(["orphans", "--json"], bad)
    expect(swept.exitCode).toBe(0)
    const report = JSON.parse(swept.stdout) as { providers: Array<string>; skipped: Array<{ provider: string; message: string }> }
    expect(report.providers).toContain("local")
    expect(report.skipped).toContainEqual({ provider: "aws", message: named })
    // Worded alike by both commands: the same skip is the same warning.
    expect(swept.stderr).toContain(`repl: warn: skipped provider aws: ${named}`)
    const listed = await run(["snapshot", "list", "--json"], bad)
    expect([listed.exitCode, listed.stdout]).toEqual([0, "[]"])
    expect(listed.stderr).toContain(`repl: warn: skipped provider aws: ${named}`)
    for (const args of [["orphans", "--provider", "aws"], ["snapshot", "list", "--provider", "aws"]]) {
      const refused = await run(args, bad)
      expect([refused.exitCode, refused.stderr]).toEqual([2, `repl: ${named}`])
    }
  })

  it("orphans --provider naming a malformed provider writes nothing and reaps nothing, as other usage errors", async () => {
    for (const bad of [{ SKYREPL_AWS_ENDPOINT: "notaurl" }, { SKYREPL_ORBSTACK_BOOT_TIMEOUT: "x" }]) {
      const provider = "SKYREPL_AWS_ENDPOINT" in bad ? "aws" : "orbstack"
      const refused = await run(["orphans", "--provider", provider], bad)
      expect([refused.exitCode, lines(refused.stderr).length]).toEqual([2, 1])
      expect(existsSync(join(home, "state.db"))).toBe(false)
      expect(existsSync(join(home, "control-id"))).toBe(false)
    }
  })

  it("an OrbStack host alias that is no host, or a zero OrbStack boot time-out, is refused before anything is recorded", async () => {
    // The alias was ignored by the agent URL it was put in, which then named the machine's own
    // loopback; a zero time-out failed any machine not running at the first look.
    for (const [extra, line] of [
      [{ SKYREPL_ORBSTACK_HOST_ALIAS: "bad host!" }, 'repl: SKYREPL_ORBSTACK_HOST_ALIAS: "bad host!" is not a host name or an IP address (e.g. host.orb.internal)'],
      [{ SKYREPL_ORBSTACK_BOOT_TIMEOUT: "0s" }, "repl: SKYREPL_ORBSTACK_BOOT_TIMEOUT: must be longer than 0"]
    ] as const) {
      const result = await run(["run", "-c", "echo hi", "--provider", "orbstack"], { ...orbstackEnv(), ...extra })
      expect([result.exitCode, result.stdout, lines(result.stderr)]).toEqual([2, "", [line]])
      expect(existsSync(join(home, "state.db"))).toBe(false)
    }
  })

  it("a provider that cannot be reached now is not swept, the others are, and the sweep says so and exits 1", async () => {
    // Nothing listens on port 1: every call is refused, and retried (about 3 s) before the sweep gives up on AWS.
    const unreachable = { SKYREPL_AWS_ENDPOINT: "http://127.0.0.1:1", AWS_REGION: "us-east-1", AWS_ACCESS_KEY_ID: "testing", AWS_SECRET_ACCESS_KEY: "testing" }
    const swept = await run(["orphans", "--json"], unreachable)
    expect(swept.exitCode).toBe(1)
    const report = JSON.parse(swept.stdout) as { providers: Array<string>; skipped: Array<{ provider: string; failed?: boolean }> }
    expect(report.providers).toContain("local")
    expect(report.skipped).toContainEqual(expect.objectContaining({ provider: "aws", failed: true }))
    expect(swept.stderr).toMatch(/^repl: could not sweep provider aws: DescribeInstances in us-east-1 failed \(ECONNREFUSED\)/m)
  }, 90_000)

  it("AWS_PROFILE naming no profile, with keys also set: one line that says the keys were ignored, not the SDK's warning", async () => {
    const empty = join(home, "empty-aws-config")
    writeFileSync(empty, "")
    const result = await run(["orphans", "--provider", "aws"], {
      AWS_PROFILE: "nonexistent",
      AWS_ACCESS_KEY_ID: "AKIAEXAMPLEEXAMPLE00",
      AWS_SECRET_ACCESS_KEY: "secret",
      AWS_REGION: "us-east-1",
      AWS_CONFIG_FILE: empty,
      AWS_SHARED_CREDENTIALS_FILE: empty,
      AWS_EC2_METADATA_DISABLED: "true"
    })
    expect(result.exitCode).toBe(1)
    expect(lines(result.stderr)).toHaveLength(1)
    expect(result.stderr).toMatch(/^repl: no AWS credentials found .*AWS_PROFILE is set \("nonexistent"\).*ignores AWS_ACCESS_KEY_ID/)
  })

  it("an unknown flag, or a value for a flag that takes none, is named with its command and that command's help", async () => {
    for (const [args, line] of [
      [["run", "-c", "true", "--bogus"], "repl: unknown flag --bogus for 'repl run' (see 'repl run --help')"],
      [["run", "list", "--bogus"], "repl: unknown flag --bogus for 'repl run list' (see 'repl run list --help')"],
      [["--bogus"], "repl: unknown flag --bogus (see 'repl --help')"],
      // After a flag given with "=", clipanion matches no command at all.
      [["run", "-c", "true", "--provider=local", "--bogus"], "repl: unknown flag --bogus for 'repl run' (see 'repl run --help')"],
      [["run", "-c", "true", "--spot=true"], `repl: --spot takes no value for 'repl run' (got "--spot=true"; see 'repl run --help')`],
      [["run", "list", "--json=1"], `repl: --json takes no value for 'repl run list' (got "--json=1"; see 'repl run list --help')`]
    ] as const) {
      const result = await run(args)
      expect([args, result.exitCode, lines(result.stderr)]).toEqual([args, 2, [line]])
    }
  })

  it("a flag that takes one value, given twice in whatever form, names the flag and its command; nothing runs or is recorded", async () => {
    // clipanion kept the last value silently: `-c 'echo A' -c 'echo B'` ran `echo B`.
    const twice = (flag: string, path: string) => `repl: ${flag} given more than once for 'repl ${path}': it takes one value (see 'repl ${path} --help')`
    for (const [args, line] of [
      [["run", "-c", "echo A", "-c", "echo B"], twice("-c", "run")],
      [["run", "--command", "echo A", "--command=echo B"], twice("--command", "run")],
      [["run", "-c", "echo A", "--command", "echo B"], twice("-c/--command", "run")],
      [["run", "-c", "true", "--provider", "local", "--provider=local"], twice("--provider", "run")],
      [["run", "-c", "true", "--spec", "sandbox", "--spec", "process"], twice("--spec", "run")],
      [["run", "-c", "true", "--region=a", "--region=b"], twice("--region", "run")],
      [["run", "-c", "true", "--max-duration", "5s", "--env", "A=1", "--max-duration", "1h"], twice("--max-duration", "run")],
      [["run", "list", "--limit", "1", "--limit", "2"], twice("--limit", "run list")],
      [["run", "attach", "x", "--from-stdout", "1", "--from-stdout", "2"], twice("--from-stdout", "run attach")],
      [["run", "attach", "--from-stderr=1", "x", "--from-stderr=2"], twice("--from-stderr", "run attach")],
      [["allocation", "list", "--state", "active", "--state", "released"], twice("--state", "allocation list")],
      [["orphans", "--min-age", "0", "--reap", "--own", "--min-age", "1h"], twice("--min-age", "orphans")],
      [["snapshot", "create", "x", "--name", "a", "--name", "b"], twice("--name", "snapshot create")],
      [["snapshot", "delete", "x", "--provider", "aws", "--provider", "orbstack"], twice("--provider", "snapshot delete")],
      [["snapshot", "delete", "x", "--provider", "aws", "--region", "us-east-1", "--region", "eu-west-1"], twice("--region", "snapshot delete")]
    ] as const) {
      const result = await run(args)
      expect([args, result.exitCode, lines(result.stderr), result.stdout]).toEqual([args, 2, [line], ""])
    }
    // With --json, repl run's JSON Lines end with the error as for every usage error.
    const json = await run(["run", "--json", "-c", "echo A", "-c", "echo B"])
    expect([json.exitCode, lines(json.stdout).map((l) => JSON.parse(l) as unknown)]).toEqual([2, [{ type: "error", message: twice("-c", "run").slice(6), status: 2 }]])
    expect(existsSync(join(home, "state.db"))).toBe(false)
    expect((await run(["run", "list", "--json"])).stdout).toBe("[]")
    // After "--" a word is an argument, not a second -c; a switch given twice is given.
    const operand = await run(["run", "-c", "echo A", "--", "-c"])
    expect([operand.exitCode, lines(operand.stderr)]).toEqual([2, [`repl: unexpected argument "-c" for 'repl run': it takes none; after "--", -c is an argument, not a flag (see 'repl run --help')`]])
    const repeatable = await run(["run", "-c", "echo $A$B", "--env", "A=1", "--env=B=2", "--progress", "--progress"])
    expect([repeatable.exitCode, repeatable.stdout]).toEqual([0, "12"])
    const listed = await run(["run", "list", "--json", "--json", "--state", "succeeded", "--state=failed"])
    expect([listed.exitCode, (JSON.parse(listed.stdout) as Array<{ command: string }>).map((r) => r.command)]).toEqual([0, ["echo $A$B"]])
  })

  it("a snapshot id that could never be the provider's is named, with what its ids look like", async () => {
    const aws = await run(["snapshot", "delete", "x", "--provider", "aws", "--region", "us-east-1"])
    expect(lines(aws.stderr)).toEqual(['repl: provider "aws": "x" is not an AMI id (ami- and 8 to 17 hex digits; repl snapshot list shows them)'])
    const orbstack = await run(["snapshot", "delete", "repl-foo", "--provider", "orbstack"], orbstackEnv())
    expect(lines(orbstack.stderr)).toEqual(['repl: provider "orbstack": "repl-foo" is not a SkyREPL snapshot (their ids start with replsnap-); other machines are left alone'])
    expect([aws.exitCode, orbstack.exitCode]).toEqual([2, 2])
  })

  it("an empty command says so, not the options' schema; a zero or infinite time limit names its flag", async () => {
    const result = await run(["run", "-c", ""])
    expect(lines(result.stderr)).toEqual(["repl: command must not be empty"])
    const zero = await run(["run", "-c", "true", "--max-duration", "0s"])
    expect(lines(zero.stderr)).toEqual(['repl: --max-duration must be longer than 0 (got "0s")'])
    // A number too long to be finite was named by the SDK's option, "maxDuration must be a positive, finite duration".
    const endless = `${"9".repeat(400)}h`
    const infinite = await run(["run", "-c", "true", "--max-duration", endless])
    expect([infinite.exitCode, lines(infinite.stderr)]).toEqual([2, [`repl: --max-duration: invalid duration "${endless}": too long to count in milliseconds`]])
    expect(existsSync(join(home, "state.db"))).toBe(false)
  })

  it("a --min-age under a millisecond or too long to be finite names its flag, and sweeps nothing", async () => {
    // Rounded to 0, 0.4ms swept with no margin at all.
    const tiny = await run(["orphans", "--reap", "--own", "--min-age", "0.4ms"])
    expect([tiny.exitCode, lines(tiny.stderr)]).toEqual([2, ['repl: --min-age: invalid duration "0.4ms": under a millisecond, the least SkyREPL counts']])
    // Infinite, every orphan was too young: a sweep that quietly reaped nothing.
    const endless = `${"9".repeat(400)}h`
    const infinite = await run(["orphans", "--reap", "--own", "--min-age", endless])
    expect([infinite.exitCode, lines(infinite.stderr)]).toEqual([2, [`repl: --min-age: invalid duration "${endless}": too long to count in milliseconds`]])
    expect(existsSync(join(home, "state.db"))).toBe(false)
  })

  it("an invalid spec names the valid forms; a bad region names what a region looks like, not the spec's forms", async () => {
    const result = await run(["run", "-c", "true", "--spec", "gpu:h100"])
    expect(result.stderr).toContain("sandbox")
    expect(result.stderr).toContain("process")
    const region = await run(["run", "-c", "true", "--provider", "aws", "--region", "mars-1"])
    expect(lines(region.stderr)).toEqual(['repl: "mars-1" is not an AWS region name (e.g. us-east-1, eu-west-2)'])
  })

  it("a missing required option or command names what is missing", async () => {
    expect(lines((await run(["run"])).stderr)).toEqual(["repl: missing -c/--command for 'repl run' (see 'repl run --help')"])
    expect(lines((await run(["snapshot", "delete", "x"])).stderr)).toEqual([
      "repl: missing --provider for 'repl snapshot delete' (see 'repl snapshot delete --help')"
    ])
    // A missing argument too: clipanion's own line was "Not enough positional arguments."
    for (const [args, line] of [
      [["run", "attach"], "repl: missing <run-id> for 'repl run attach' (see 'repl run attach --help')"],
      [["run", "attach", "--from-stdout", "4"], "repl: missing <run-id> for 'repl run attach' (see 'repl run attach --help')"],
      [["run", "cancel", "--json"], "repl: missing <run-id> for 'repl run cancel' (see 'repl run cancel --help')"],
      [["snapshot", "create", "--name", "x"], "repl: missing <run-id|instance-name> for 'repl snapshot create' (see 'repl snapshot create --help')"],
      [["snapshot", "delete", "--provider=aws"], "repl: missing <snapshot-id> for 'repl snapshot delete' (see 'repl snapshot delete --help')"],
      [["snapshot", "delete"], "repl: missing --provider, <snapshot-id> for 'repl snapshot delete' (see 'repl snapshot delete --help')"]
    ] as const) {
      const result = await run(args)
      expect([args, result.exitCode, lines(result.stderr)]).toEqual([args, 2, [line]])
    }
    expect(lines((await run(["instance"])).stderr)).toEqual(['repl: "instance" needs a command after it: repl instance list (see \'repl --help\')'])
    expect(lines((await run(["launch-rockets"])).stderr)).toEqual(['repl: unknown command "launch-rockets" (see \'repl --help\')'])
  })

  it("an argument a command has no place for names the command and what it takes", async () => {
    // clipanion said "Extraneous positional argument" without the command, and for a command
    // that takes no argument, "expected repl run".
    for (const [args, line] of [
      [["run", "-c", "true", "--", "--json"], `repl: unexpected argument "--json" for 'repl run': it takes none; after "--", --json is an argument, not a flag (see 'repl run --help')`],
      [["run", "-c", "true", "extra"], `repl: unexpected argument "extra" for 'repl run': it takes none (see 'repl run --help')`],
      [["run", "list", "extra"], `repl: unexpected argument "extra" for 'repl run list': it takes none (see 'repl run list --help')`],
      // A lone "-" is no flag, and no "--" came before it: the line said it had.
      [["run", "list", "-"], `repl: unexpected argument "-" for 'repl run list': it takes none (see 'repl run list --help')`],
      [["run", "-c", "true", "-"], `repl: unexpected argument "-" for 'repl run': it takes none (see 'repl run --help')`],
      [["run", "attach", "x", "y"], `repl: unexpected argument "y" for 'repl run attach': it takes <run-id> (see 'repl run attach --help')`],
      [["run", "attach", "--from-stdout", "5", "x", "y"], `repl: unexpected argument "y" for 'repl run attach': it takes <run-id> (see 'repl run attach --help')`],
      [["snapshot", "delete", "a", "b", "--provider", "aws"], `repl: unexpected argument "b" for 'repl snapshot delete': it takes <snapshot-id> (see 'repl snapshot delete --help')`]
    ] as const) {
      const result = await run(args)
      expect([args, result.exitCode, lines(result.stderr), result.stdout]).toEqual([args, 2, [line], ""])
    }
  })

  it("settings that parse but cannot run are refused before anything is written", async () => {
    const cases: ReadonlyArray<[Record<string, string>, string]> = [
      // A zero lease once made the reaper spin with no pause: the CLI hung, deaf to Ctrl-C.
      [{ SKYREPL_LEASE_TTL: "0s" }, "repl: configuration: SKYREPL_LEASE_TTL: must be longer than 0"],
      [{ SKYREPL_DEADMAN_TIMEOUT: "300ms" }, "repl: configuration: SKYREPL_DEADMAN_TIMEOUT: must be at least twice the heartbeat interval (250ms), or one late heartbeat ends a healthy run"],
      [{ SKYREPL_HOME: "" }, "repl: configuration: SKYREPL_HOME: must not be empty"],
      [{ SKYREPL_HUB_HOST: "999.1.1.1" }, 'repl: configuration: SKYREPL_HUB_HOST: "999.1.1.1" is not an IP address or a host name to listen on (e.g. 127.0.0.1, 0.0.0.0, ::)'],
      [{ SKYREPL_CONTROL_PLANE_URL: "ftp://x" }, 'repl: configuration: SKYREPL_CONTROL_PLANE_URL: "ftp://x" is not an http:// or https:// URL, which is all an agent can call'],
      [{ SKYREPL_PROVIDER: "" }, "repl: configuration: SKYREPL_PROVIDER: must not be empty"],
      [{ SKYREPL_PROVIDER: "nope" }, 'repl: SKYREPL_PROVIDER: unknown provider "nope" (configured: local, aws, orbstack)'],
      [{ SKYREPL_DEADMAN_TIMEOUT: "25h" }, "repl: configuration: SKYREPL_DEADMAN_TIMEOUT: must be at most 24h: the agent keeps its dead-man window within a day"],
      // A provider's own variable: the launch is refused before anything is recorded.
      [{ SKYREPL_FORK_SERVER: "bogus" }, 'repl: SKYREPL_FORK_SERVER: "bogus" is not one of auto, always, never'],
      [{ SKYREPL_PYTHON: "/nonexistent/python3" }, "repl: SKYREPL_PYTHON: /nonexistent/python3 is not an executable file"],
      [{ SKYREPL_PYTHON: "no-such-python9" }, 'repl: SKYREPL_PYTHON: no "no-such-python9" on PATH']
    ]
    for (const [extra, line] of cases) {
      const result = await execa(repl, ["run", "-c", "echo hi"], { env: env(extra), reject: false, timeout: 30_000, stdin: "ignore", cwd: home })
      expect([result.exitCode, lines(result.stderr)]).toEqual([2, [line]])
      expect(readdirSync(home)).toEqual([])
    }
  })

  it("a SKYREPL_* variable set but empty is refused, naming it, like SKYREPL_HOME and SKYREPL_PROVIDER, never taken for unset", async () => {
    // SKYREPL_PYTHON= (and every provider variable) was taken as unset while SKYREPL_PROVIDER=
    // was refused; an empty SKYREPL_AWS_ENDPOINT sent an emulator's calls to AWS itself.
    const cases: ReadonlyArray<[Record<string, string>, ReadonlyArray<string>, string]> = [
      [{ SKYREPL_PYTHON: "" }, [], "repl: SKYREPL_PYTHON: must not be empty"],
      [{ SKYREPL_FORK_SERVER: " " }, [], "repl: SKYREPL_FORK_SERVER: must not be empty"],
      [{ SKYREPL_LEASE_TTL: "" }, [], "repl: configuration: SKYREPL_LEASE_TTL: must not be empty"],
      [{ SKYREPL_HUB_HOST: "" }, [], "repl: configuration: SKYREPL_HUB_HOST: must not be empty"],
      [{ SKYREPL_AWS_ENDPOINT: "" }, ["--provider", "aws"], "repl: SKYREPL_AWS_ENDPOINT: must not be empty"],
      [{ SKYREPL_ORBSTACK_HOST_ALIAS: "" }, ["--provider", "orbstack"], "repl: SKYREPL_ORBSTACK_HOST_ALIAS: must not be empty"]
    ]
    for (const [extra, args, line] of cases) {
      const result = await execa(repl, ["run", "-c", "echo hi", ...args], { env: env(extra), reject: false, timeout: 30_000, stdin: "ignore", cwd: home })
      expect([extra, result.exitCode, lines(result.stderr)]).toEqual([extra, 2, [line]])
      expect(readdirSync(home)).toEqual([])
    }
  })

  it("a SKYREPL_HOME too long for SQLite is a configuration error naming it and the limit, before anything is made", async () => {
    // It was "open: unable to open database file (SQLITE_CANTOPEN)": SQLite opens no database
    // whose path is over 504 bytes. Components of 100 bytes, each well within a file name's 255.
    const within = (bytes: number) => {
      let path = home
      while (Buffer.byteLength(path) < bytes) path = join(path, "d".repeat(Math.min(100, bytes - Buffer.byteLength(path) - 1)))
      return path
    }
    const longest = within(495)
    expect(Buffer.byteLength(join(longest, "state.db"))).toBe(504)
    const fits = await run(["run", "list", "--json"], { SKYREPL_HOME: longest })
    expect([fits.exitCode, fits.stdout, fits.stderr]).toEqual([0, "[]", ""])
    rmSync(join(home, "d".repeat(100)), { recursive: true })
    // A byte more, or a short link to a long directory: SQLite measures the path it resolves.
    mkdirSync(within(496), { recursive: true })
    const link = join(home, "link")
    symlinkSync(within(496), link)
    for (const tooLong of [within(496), within(520), link]) {
      const result = await run(["run", "list"], { SKYREPL_HOME: tooLong })
      expect([result.exitCode, lines(result.stderr)]).toEqual([
        2,
        [expect.stringMatching(/^repl: configuration: SKYREPL_HOME: too long: its store, state\.db, would have a path of (505|529) bytes .*over 504; keep SKYREPL_HOME within 495 bytes$/)]
      ])
      expect(existsSync(join(tooLong, "state.db"))).toBe(false)
    }
    expect(existsSync(within(520))).toBe(false)
  })

  it("a state home SQLite cannot use is one line naming the path and what to do, exit 1, no stack trace", async () => {
    // Each said "open: unable to open database file (SQLITE_CANTOPEN)" or mkdir's "EEXIST: file
    // already exists", naming neither the cause nor, for a file in the way, the file.
    const file = join(home, "a-file")
    writeFileSync(file, "")
    const dbDirectory = join(home, "db-is-a-directory")
    mkdirSync(join(dbDirectory, "state.db"), { recursive: true })
    const cases: ReadonlyArray<[string, string]> = [
      [file, `repl: open: ${file} is a file, not a directory, so ${join(file, "state.db")} cannot be made there; move it aside, or use another state home`],
      [dbDirectory, `repl: open: unable to open database file (SQLITE_CANTOPEN): ${join(dbDirectory, "state.db")} is a directory, not a file SQLite can use; move it aside`]
    ]
    for (const [stateHome, says] of cases) {
      const result = await run(["run", "list"], { SKYREPL_HOME: stateHome })
      expect([result.exitCode, result.stdout, lines(result.stderr)]).toEqual([1, "", [says]])
    }
  })

  // Read-only as root needs an immutable directory (chattr +i): mode bits do not stop root.
  const canMakeImmutable = (() => {
    const probe = tempHome()
    const done = (on: boolean) => spawnSync("chattr", [on ? "+i" : "-i", probe]).status === 0
    const works = done(true) && done(false)
    removeHome(probe)
    return works
  })()
  it.skipIf(!canMakeImmutable)("a state home made read-only after a clean exit says it is not writable, in one line, exit 1", async () => {
    expect((await run(["run", "list"])).exitCode).toBe(0)
    expect(spawnSync("chattr", ["+i", home]).status).toBe(0)
    try {
      const result = await run(["run", "list"])
      expect([result.exitCode, result.stdout, lines(result.stderr)]).toEqual([
        1,
        "",
        [
          expect.stringMatching(
            /^repl: open: unable to open database file \(SQLITE_CANTOPEN\): the state home .+ is not writable \([a-z ]+\), and SQLite must create state\.db-wal and state\.db-shm there to use state\.db; make it writable, or use another state home$/
          )
        ]
      ])
      expect(result.stderr).toContain(`the state home ${home} is not writable`)
    } finally {
      spawnSync("chattr", ["-i", home])
    }
  })

  it("an agent endpoint on an IPv6 address is one the agent can call (its URL brackets the address)", async () => {
    const result = await run(["run", "-c", "echo ok"], { SKYREPL_HUB_HOST: "::1" })
    expect([result.exitCode, result.stdout]).toEqual([0, "ok"])
  })

  it("SKYREPL_DEBUG=1 puts the full cause after the one-line error", async () => {
    const result = await run(["run", "cancel", "nosuchrun"], { SKYREPL_DEBUG: "1" })
    expect(result.exitCode).toBe(1)
    expect(lines(result.stderr)[0]).toMatch(/^repl: no run with id/)
    expect(lines(result.stderr).length).toBeGreaterThan(1)
  })

  it("a malformed SKYREPL_LEASE_TTL is a one-line configuration error", async () => {
    const result = await run(["run", "list"], { SKYREPL_LEASE_TTL: "soon" })
    expect(result.exitCode).toBe(2)
    expect(lines(result.stderr)).toHaveLength(1)
    expect(result.stderr).toContain("SKYREPL_LEASE_TTL")
  })
})

describe("--json failures", () => {
  /** A failure as a script reading `--json` sees it: one `error` object on stdout, the same words on stderr. */
  const expectJsonError = (args: ReadonlyArray<string>, result: { exitCode?: number; stdout: string; stderr: string }, status: number) => {
    expect([args, result.exitCode, lines(result.stderr).length]).toEqual([args, status, 1])
    expect(result.stderr).toMatch(/^repl: /)
    expect(result.stderr).not.toMatch(/\bat .*\.ts:\d+/)
    expect([args, lines(result.stdout).map((l) => JSON.parse(l) as unknown)]).toEqual([
      args,
      [{ type: "error", message: result.stderr.replace(/^repl: /, ""), status }]
    ])
  }

  it("every command that takes --json says a failure as an error object on stdout and the same line on stderr, as repl run does", async () => {
    const cases: ReadonlyArray<readonly [ReadonlyArray<string>, number, Record<string, string>?]> = [
      // A flag's value refused in preflight.
      [["run", "list", "--json", "--limit", "x"], 2],
      [["run", "list", "--json", "--state", "bogus"], 2],
      [["allocation", "list", "--json", "--state", "bogus"], 2],
      [["orphans", "--json", "--min-age", "5"], 2],
      [["snapshot", "delete", "x", "--provider", "aws", "--region", "us-east-1", "--json"], 2],
      // A provider that is not there, or has no snapshots.
      [["orphans", "--provider", "nimbus", "--json"], 2],
      [["snapshot", "list", "--provider", "nimbus", "--json"], 2],
      [["snapshot", "delete", "x", "--provider", "nimbus", "--json"], 2],
      [["snapshot", "list", "--provider", "local", "--json"], 2],
      // Settings that do not parse.
      [["instance", "list", "--json"], 2, { SKYREPL_LEASE_TTL: "bogus" }],
      // What is asked for is not there.
      [["run", "cancel", "nosuchrun0000", "--json"], 1],
      [["snapshot", "create", "nosuchrun0000", "--json"], 1]
    ]
    for (const [args, status, extra] of cases) expectJsonError(args, await run(args, extra), status)
    // A store that cannot be opened: its file is a directory.
    const blocked = join(home, "blocked")
    mkdirSync(join(blocked, "state.db"), { recursive: true })
    for (const args of [["instance", "list", "--json"], ["allocation", "list", "--json"], ["run", "list", "--json"]]) {
      expectJsonError(args, await run(args, { SKYREPL_HOME: blocked }), 1)
    }
  })

  it("a provider's API failure with --json is an error object too (snapshot list, orphans --provider)", async () => {
    // Nothing listens on port 1: every call is refused, and retried (about 3 s) before the command gives up.
    const unreachable = { SKYREPL_AWS_ENDPOINT: "http://127.0.0.1:1", AWS_REGION: "us-east-1", AWS_ACCESS_KEY_ID: "testing", AWS_SECRET_ACCESS_KEY: "testing" }
    const all = [["snapshot", "list", "--provider", "aws", "--json"], ["orphans", "--provider", "aws", "--json"]] as const
    const results = await Promise.all(all.map((args) => run(args, unreachable)))
    all.forEach((args, i) => expectJsonError(args, results[i]!, 1))
    // Listing snapshots asks for images and their EBS snapshots at once: either call may fail first.
    expect(results[0]!.stderr).toMatch(/^repl: Describe(Images|Snapshots) in us-east-1 failed \(ECONNREFUSED\)/)
  }, 90_000)

  it("Ctrl-C of a command whose --json is one document ends with an error object", async () => {
    // An endpoint that takes the connection and never answers: the sweep waits there until interrupted.
    const sockets: Array<Socket> = []
    let connected: () => void = () => undefined
    const reached = new Promise<void>((resolve) => (connected = resolve))
    const server = createServer((socket) => {
      // The CLI's end resets the connection: nothing to tell.
      socket.on("error", () => undefined)
      sockets.push(socket)
      connected()
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const port = (server.address() as AddressInfo).port
    try {
      const args = ["orphans", "--provider", "aws", "--json"]
      const child = execa(repl, args, {
        env: env({ SKYREPL_AWS_ENDPOINT: `http://127.0.0.1:${port}`, AWS_REGION: "us-east-1", AWS_ACCESS_KEY_ID: "testing", AWS_SECRET_ACCESS_KEY: "testing" }),
        reject: false,
        stdin: "ignore",
        timeout: 60_000
      })
      started.push(child)
      await reached
      child.kill("SIGINT")
      const result = await child
      expectJsonError(args, result, 130)
      expect(result.stderr).toBe("repl: interrupted")
    } finally {
      for (const socket of sockets) socket.destroy()
      server.close()
    }
  })

  it("a usage error is an error object whenever --json is among the words before --, whatever command they name", async () => {
    for (const args of [
      ["run", "list", "--json", "--bogus"],
      ["run", "lsit", "--json"],
      ["--version", "--json", "--help"],
      ["--version", "--json"],
      ["--json"],
      ["lsit", "--json"],
      ["snapshot", "--json"],
      ["instance", "list", "--json", "extra"],
      ["allocation", "list", "--json", "--state"],
      ["run", "cancel", "--json"],
      ["snapshot", "delete", "--json", "x"],
      ["orphans", "--json", "--min-age", "1s", "--min-age", "2s"],
      ["snapshot", "list", "--json", "--provider"]
    ]) {
      expectJsonError(args, await run(args), 2)
    }
    // Not asked: no --json, one after "--" (an argument there), or one a later --no-json undid.
    for (const args of [["run", "list", "--bogus"], ["instance", "list", "--", "--json"], ["run", "list", "--json", "--no-json", "--bogus"], ["--version", "--", "--json"]]) {
      const result = await run(args)
      expect([args, result.exitCode, result.stdout, lines(result.stderr).length]).toEqual([args, 2, "", 1])
    }
    // Help is asked for, not a failure: text, --json or not.
    const help = await run(["run", "list", "--json", "--help"])
    expect([help.exitCode, help.stderr, help.stdout]).toEqual([0, "", (await run(["run", "list", "--help"])).stdout])
    expect(existsSync(join(home, "state.db"))).toBe(false)
  })
})

describe("listings", () => {
  it("run list, run attach, run cancel, instance list and allocation list", async () => {
    const first = await run(["run", "-c", "printf 'one\\ntwo\\n'; exit 3", "--json"])
    const exitEvent = JSON.parse(lines(first.stdout).at(-1) ?? "{}") as { runId: string; instance: string }
    const runs = JSON.parse((await run(["run", "list", "--json"])).stdout) as Array<{ id: string; state: string; exitCode: number }>
    expect(runs).toHaveLength(1)
    expect(runs[0]).toMatchObject({ id: exitEvent.runId, state: "failed", exitCode: 3 })

    const table = await run(["run", "list"])
    expect(table.stdout).toContain(exitEvent.runId)
    expect(table.stdout).toMatch(/^RUN\s+STATE/)

    const attached = await run(["run", "attach", exitEvent.runId])
    expect(attached.stdout).toBe("one\ntwo")
    expect(attached.exitCode).toBe(3)
    const resumed = await run(["run", "attach", exitEvent.runId, "--from-stdout", "4"])
    expect(resumed.stdout).toBe("two")

    const cancelled = await run(["run", "cancel", exitEvent.runId, "--json"])
    expect(JSON.parse(cancelled.stdout)).toMatchObject({ outcome: "already-finished", state: "failed" })
    expect(cancelled.exitCode).toBe(0)

    const unknown = await run(["run", "cancel", "nosuchrun0000"])
    expect(unknown.exitCode).toBe(1)
    expect(unknown.stderr).toBe('repl: no run with id "nosuchrun0000"')

    const instances = JSON.parse((await run(["instance", "list", "--all", "--json"])).stdout) as Array<Record<string, unknown>>
    expect(instances).toHaveLength(1)
    expect(instances[0]).toMatchObject({ name: exitEvent.instance, state: "terminated" })
    expect(instances[0]).not.toHaveProperty("agentToken")
    const live = JSON.parse((await run(["instance", "list", "--json"])).stdout) as Array<unknown>
    expect(live).toEqual([])
    // A terminated instance's lease is shown as none, not as held or expired.
    const listed = lines((await run(["instance", "list", "--all"])).stdout)
    expect(listed[0]).toMatch(/^NAME\s.*\sLEASE$/)
    expect(listed[1]).toMatch(new RegExp(`^${exitEvent.instance}\\s+terminated\\s.*\\s-$`))

    const allocations = JSON.parse((await run(["allocation", "list", "--json"])).stdout) as Array<{ runId: string; state: string }>
    expect(allocations).toEqual([expect.objectContaining({ runId: exitEvent.runId, state: "released" })])

    // A run that did not end by itself: attach says how it ended, as repl run did.
    const timedOut = await run(["run", "-c", "sleep 600", "--max-duration", "1s", "--json"])
    const timedOutId = (JSON.parse(lines(timedOut.stdout).at(-1) ?? "{}") as { runId: string }).runId
    const late = await run(["run", "attach", timedOutId])
    expect([late.exitCode, lines(late.stderr)]).toEqual([124, [`repl: run ${timedOutId} exceeded --max-duration and was stopped`]])
  })

  it("run list shows a command with newlines, tabs or escape sequences on one line, escaped, and cuts it between characters", async () => {
    // 57 columns, then an emoji of two code points (four UTF-16 units, two columns) and two
    // more: the cut at 60 columns falls after the emoji, leaving a column for the "…".
    const long = `echo ${"a".repeat(52)}👍🏽bc`
    for (const command of ["echo one\necho two\tthree", "echo \u001b[31mred\u001b[0m\r", long]) {
      expect((await run(["run", "-c", command])).exitCode).toBe(0)
    }
    const listed = await run(["run", "list"])
    expect(listed.exitCode).toBe(0)
    expect(listed.stdout).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f\ufffd]/)
    const rows = lines(listed.stdout)
    expect(rows).toHaveLength(4)
    expect(rows[1]).toMatch(/\s\S+aa👍🏽…$/)
    expect(rows[2]).toMatch(/\secho \\x1b\[31mred\\x1b\[0m\\r$/)
    expect(rows[3]).toMatch(/\secho one\\necho two\\tthree$/)
    // The columns line up: every row's command starts where the header's COMMAND does.
    const column = rows[0]!.indexOf("COMMAND")
    expect(rows.slice(1).map((row) => row.slice(column, column + 5))).toEqual(["echo ", "echo ", "echo "])
  })

  it("a run whose instance could not be ended exits non-zero and says so, once; the next command ends it", async () => {
    const orbstack = orbstackEnv()
    // The emulator's delete refuses while this file says so; the run itself is untouched by it.
    mkdirSync(orbstack.ORBCTL_EMULATOR_HOME ?? "", { recursive: true })
    const faults = join(orbstack.ORBCTL_EMULATOR_HOME ?? "", "faults")
    writeFileSync(faults, "delete-fails\n")
    const result = await run(["run", "--provider", "orbstack", "-c", "echo hi", "--json"], orbstack)
    const said = lines(result.stderr)
    // Asked twice (the run's end, then its scope), with the same failure: said once.
    expect(said.filter((line) => line.startsWith("repl: error: terminating"))).toHaveLength(1)
    const instance = /^repl: the run ended, but (\S+) may still be running: ending the instance was not confirmed/.exec(said.at(-1) ?? "")?.[1]
    expect(instance).toMatch(/^repl-/)
    expect(result.exitCode).toBe(1)
    // The command's output and end are there, and the last object says how repl ended.
    const objects = lines(result.stdout).map((line) => JSON.parse(line) as { type: string; exitCode?: number; status?: number })
    expect(objects.map((o) => o.type)).toEqual(["output", "exit", "error"])
    expect([objects[1]?.exitCode, objects[2]?.status]).toEqual([0, 1])
    rmSync(faults)
    // The owner is gone: the next command's reaper ends the instance at once.
    expect((await run(["instance", "list"], orbstack)).exitCode).toBe(0)
    const all = JSON.parse((await run(["instance", "list", "--all", "--json"], orbstack)).stdout) as Array<{ name: string; state: string }>
    expect(all.map((i) => [i.name, i.state])).toEqual([[instance, "terminated"]])
    expect((await execa("orbctl", ["list"], { env: orbstack, reject: false })).stdout).not.toContain(instance ?? "?")
  })

  it("a --provider given twice is asked once: orphans names it once, snapshot list lists each snapshot once", async () => {
    const orbstack = orbstackEnv()
    const orphans = await run(["orphans", "--provider", "local", "--provider", "orbstack", "--provider", "local", "--json"], orbstack)
    expect(orphans.exitCode).toBe(0)
    expect((JSON.parse(orphans.stdout) as { providers: Array<string> }).providers).toEqual(["local", "orbstack"])
    // An OrbStack snapshot is a stopped machine named replsnap-NAME; the emulator stands in for OrbStack.
    for (const args of [["create", "ubuntu", "replsnap-base"], ["stop", "replsnap-base"]]) {
      expect((await execa("orbctl", args, { env: orbstack, reject: false })).exitCode).toBe(0)
    }
    try {
      const listed = await run(["snapshot", "list", "--provider", "orbstack", "--provider", "orbstack", "--json"], orbstack)
      expect(listed.exitCode).toBe(0)
      expect((JSON.parse(listed.stdout) as Array<{ id: string }>).map((s) => s.id)).toEqual(["replsnap-base"])
      expect(lines((await run(["snapshot", "list", "--provider", "orbstack", "--provider", "orbstack"], orbstack)).stdout)).toHaveLength(2)
    } finally {
      await execa("orbctl", ["delete", "-f", "replsnap-base"], { env: orbstack, reject: false })
    }
  })

  it("--version and --help", async () => {
    const version = await run(["--version"])
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/)
    const help = await run(["--help"])
    expect(help.exitCode).toBe(0)
    for (const path of ["run", "run list", "run attach", "run cancel", "instance list", "allocation list", "orphans"]) {
      expect(help.stdout).toContain(`repl ${path}`)
    }
    // An option's value is `<value>`, not clipanion's `#0`, and the option list stays aligned.
    expect(help.stdout).toContain("repl run list [--limit <value>]")
    expect(help.stdout).not.toMatch(/#\d/)
    const runHelp = (await run(["run", "--help"])).stdout
    expect(runHelp).not.toMatch(/#\d/)
    // Where each option's description starts: after its definition and two spaces or more.
    const descriptionColumn = (text: string) => {
      const line = runHelp.split("\n").find((l) => l.includes(text)) ?? ""
      const gap = /\S( {2,})\S/.exec(line)
      return gap === null ? -1 : gap.index + 1 + gap[1]!.length
    }
    const columns = ["the command to run", "provider id", "a spot instance"].map(descriptionColumn)
    expect(columns[0]).toBeGreaterThan(0)
    expect(columns).toEqual([columns[0], columns[0], columns[0]])
    expect(runHelp).toContain("-c,--command <value>")
    // `run` is also the start of `run list` and the others: its help is still its own.
    for (const [flag, path, option] of [["--help", "run", "--max-duration"], ["-h", "run", "--provider"], ["--help", "run list", "--limit"], ["-h", "snapshot delete", "--region"]] as const) {
      const usage = await run([...path.split(" "), flag])
      expect([usage.exitCode, usage.stderr]).toEqual([0, ""])
      expect(usage.stdout).toContain(`$ repl ${path}`)
      expect(usage.stdout).toContain(option)
      expect(usage.stdout).not.toContain("Multiple commands match")
    }
  })

  it("words after the top level's --version or --help are a one-line usage error; a last --help still shows the help", async () => {
    // clipanion said "Extraneous positional argument" and "unknown flag --version", and answered
    // `--version --help` with its version command's usage line, `$ repl -v`.
    for (const [args, line] of [
      [["--version", "extra"], `repl: unexpected argument "extra" for 'repl --version': it takes none (see 'repl --help')`],
      [["-v", "extra", "more"], `repl: unexpected argument "extra" for 'repl -v': it takes none (see 'repl --help')`],
      [["--version", "--version"], `repl: unexpected argument "--version" for 'repl --version': it takes none (see 'repl --help')`],
      [["--version", "--no-json", "--help"], `repl: unexpected argument "--no-json" for 'repl --version': it takes none (see 'repl --help')`],
      [["--version", "--", "extra"], `repl: unexpected argument "extra" for 'repl --version': it takes none (see 'repl --help')`],
      [["--help", "extra"], `repl: unexpected argument "extra" for 'repl --help': it takes none (see 'repl --help')`],
      [["--help", "--version"], `repl: unexpected argument "--version" for 'repl --help': it takes none (see 'repl --help')`],
      // A command after --help was most likely its help wanted: the line names where it is.
      [["-h", "run", "list"], `repl: unexpected argument "run" for 'repl -h': it takes none (see 'repl run list --help')`],
      [["--help", "snapshot"], `repl: unexpected argument "snapshot" for 'repl --help': it takes none (see 'repl snapshot --help')`]
    ] as const) {
      const result = await run(args)
      expect([args, result.exitCode, lines(result.stderr), result.stdout]).toEqual([args, 2, [line], ""])
    }
    const help = (await run(["--help"])).stdout
    for (const args of [["--help", "--help"], ["--version", "--help"], ["-v", "-h"], ["--help", "--"]]) {
      const result = await run(args)
      expect([args, result.exitCode, result.stderr, result.stdout]).toEqual([args, 0, "", help])
    }
    const version = await run(["--version", "--"])
    expect([version.exitCode, version.stdout]).toEqual([0, (await run(["--version"])).stdout])
    expect(existsSync(join(home, "state.db"))).toBe(false)
  })

  it("--help after a command's arguments shows that command's help, and after -- it is an argument", async () => {
    // It was "unknown flag --help for 'repl run attach'", exit 2, once a run id had been given.
    for (const [args, title] of [
      [["run", "attach", "someid", "--help"], "$ repl run attach <run-id>"],
      [["run", "cancel", "someid", "-h"], "$ repl run cancel <run-id>"],
      [["snapshot", "create", "someid", "--name", "x", "--help"], "$ repl snapshot create"]
    ] as const) {
      const usage = await run(args)
      expect([args.join(" "), usage.exitCode, usage.stderr]).toEqual([args.join(" "), 0, ""])
      expect(usage.stdout).toContain(title)
    }
    const operand = await run(["run", "-c", "true", "--", "--help"])
    expect([operand.exitCode, operand.stderr]).toEqual([2, `repl: unexpected argument "--help" for 'repl run': it takes none; after "--", --help is an argument, not a flag (see 'repl run --help')`])
    expect((await run(["run", "list", "--json"])).stdout).toBe("[]")
  })

  it("a command group's --help lists the commands under it with their lines, not clipanion's -h=<index> menu", async () => {
    for (const [group, flag, entries] of [
      ["snapshot", "--help", [["snapshot create", "snapshot a live instance"], ["snapshot delete", "delete a snapshot"], ["snapshot list", "list snapshots"]]],
      ["instance", "-h", [["instance list", "list instances the store tracks"]]],
      ["allocation", "--help", [["allocation list", "list allocations"]]]
    ] as const) {
      const usage = await run([group, flag])
      expect([group, usage.exitCode, usage.stderr]).toEqual([group, 0, ""])
      expect(usage.stdout).not.toContain("Multiple commands match")
      expect(usage.stdout).not.toContain("-h=<index>")
      const listed = lines(usage.stdout).filter((l) => l.startsWith("  repl "))
      expect(listed.map((l) => l.trim().split(" ").slice(1, 3).join(" "))).toEqual(entries.map(([path]) => path))
      for (const [path, description] of entries) {
        expect(usage.stdout).toMatch(new RegExp(`\\n  repl ${path}\\b.*\\n    ${description}`))
      }
    }
  })
})

describe("words the command line does not know", () => {
  it("a lone - where a command belongs is an unknown command, not a flag", async () => {
    // It was "unknown flag -": "-" is an argument everywhere (stdin's usual name), never a flag.
    for (const [args, line] of [
      [["-"], `repl: unknown command "-" (see 'repl --help')`],
      [["-", "run"], `repl: unknown command "- run" (see 'repl --help')`],
      [["snapshot", "-"], `repl: unknown command "snapshot -" (see 'repl --help')`]
    ] as const) {
      const result = await run(args)
      expect([args, result.exitCode, lines(result.stderr), result.stdout]).toEqual([args, 2, [line], ""])
    }
    expect(existsSync(join(home, "state.db"))).toBe(false)
  })

  it("--help anywhere before -- shows that command's help, whatever else is wrong with the words", async () => {
    // `repl run list --bogus --help` was "unknown flag --bogus", exit 2: clipanion reads the
    // words in order and stops at the first it does not know, so the help was never reached.
    const listHelp = (await run(["run", "list", "--help"])).stdout
    expect(listHelp).toContain("$ repl run list")
    for (const args of [["run", "list", "--bogus", "--help"], ["run", "list", "--limit", "abc", "-h"], ["run", "list", "--help", "--bogus"], ["run", "list", "--json", "--help", "extra"]]) {
      const result = await run(args)
      expect([args, result.exitCode, result.stderr, result.stdout]).toEqual([args, 0, "", listHelp])
    }
    for (const [args, title] of [
      [["run", "-c", "true", "--bogus", "--help"], "$ repl run"],
      [["run", "--help", "-c"], "$ repl run"],
      [["run", "attach", "--from-stdout", "x", "--help"], "$ repl run attach <run-id>"],
      [["snapshot", "delete", "a", "b", "--help"], "$ repl snapshot delete"]
    ] as const) {
      const result = await run(args)
      expect([args, result.exitCode, result.stderr]).toEqual([args, 0, ""])
      expect(result.stdout).toContain(title)
    }
    // A group's listing too, and after -- it is still an argument.
    const group = await run(["snapshot", "--bogus", "--help"])
    expect([group.exitCode, group.stdout]).toEqual([0, (await run(["snapshot", "--help"])).stdout])
    const operand = await run(["run", "-c", "true", "--bogus", "--", "--help"])
    expect([operand.exitCode, lines(operand.stderr)]).toEqual([2, ["repl: unknown flag --bogus for 'repl run' (see 'repl run --help')"]])
    expect(existsSync(join(home, "state.db"))).toBe(false)
  })

  it("-- before the command ends options: a --version or --help after it is no flag but an unknown command", async () => {
    // `repl -- --version` printed the version and `repl -- --help` the help: clipanion matches
    // its own commands' names (`--version`) as words, also after "--".
    for (const [args, line] of [
      [["--", "--version"], `repl: unknown command "--version"; after "--", --version is an argument, not a flag (see 'repl --help')`],
      [["--", "-h"], `repl: unknown command "-h"; after "--", -h is an argument, not a flag (see 'repl --help')`],
      [["--", "--help", "run"], `repl: unknown command "--help run"; after "--", --help is an argument, not a flag (see 'repl --help')`],
      [["--", "--bogus"], `repl: unknown command "--bogus"; after "--", --bogus is an argument, not a flag (see 'repl --help')`]
    ] as const) {
      const result = await run(args)
      expect([args, result.exitCode, lines(result.stderr), result.stdout]).toEqual([args, 2, [line], ""])
    }
    // A command's name is no option, so it may follow "--"; its flags then may not.
    const listed = await run(["--", "run", "list"])
    expect([listed.exitCode, lines(listed.stdout)]).toEqual([0, ["RUN  STATE  EXIT  PROVIDER  STARTED  COMMAND"]])
    const json = await run(["--", "run", "list", "--json"])
    expect([json.exitCode, lines(json.stderr)]).toEqual([2, [`repl: unexpected argument "--json" for 'repl run list': it takes none; after "--", --json is an argument, not a flag (see 'repl run list --help')`]])
    // Bun dropped a first "--" given to the script, so `repl -- --version` arrived as `repl --version`.
    const version = await run(["--", "--version"])
    expect(version.stdout).toBe("")
  })

  it("a near miss of a command's name says which command was probably meant", async () => {
    for (const [args, line] of [
      [["run", "lis"], `repl: unknown command "run lis"; did you mean 'repl run list'? (see 'repl --help')`],
      [["run", "lsit", "--limit", "5"], `repl: unknown command "run lsit"; did you mean 'repl run list'? (see 'repl --help')`],
      [["run", "lis", "--help"], `repl: unknown command "run lis"; did you mean 'repl run list'? (see 'repl --help')`],
      [["instanc", "list"], `repl: unknown command "instanc list"; did you mean 'repl instance list'? (see 'repl --help')`],
      [["snapshot", "craete", "x"], `repl: unknown command "snapshot craete x"; did you mean 'repl snapshot create'? (see 'repl --help')`],
      [["orphan"], `repl: unknown command "orphan"; did you mean 'repl orphans'? (see 'repl --help')`],
      // Nothing close: as before.
      [["launch-rockets"], `repl: unknown command "launch-rockets" (see 'repl --help')`],
      [["run", "list", "extra"], `repl: unexpected argument "extra" for 'repl run list': it takes none (see 'repl run list --help')`],
      [["run", "attach", "lis", "x"], `repl: unexpected argument "x" for 'repl run attach': it takes <run-id> (see 'repl run attach --help')`]
    ] as const) {
      const result = await run(args)
      expect([args, result.exitCode, lines(result.stderr), result.stdout]).toEqual([args, 2, [line], ""])
    }
  })
})

describe("the cleanup guarantee, by breaking things", () => {
  it("SIGKILL of the CLI: the next repl command ends the instance once the lease TTL has passed", async () => {
    const { child, name } = startRun("sleep 600", { SKYREPL_LEASE_TTL: "1s" })
    const instance = await name
    child.kill("SIGKILL")
    await child
    // Still running: nobody has ended it yet (the agent's dead-man window is 10 s here).
    expect((await processesOf(instance)).length).toBeGreaterThan(0)
    await new Promise((r) => setTimeout(r, 1_500))
    const list = await run(["run", "list", "--json"], { SKYREPL_LEASE_TTL: "1s" })
    expect(list.exitCode).toBe(0)
    expect(await processesOf(instance)).toEqual([])
    const runs = JSON.parse(list.stdout) as Array<{ state: string }>
    expect(runs[0]?.state).toBe("failed")
  })

  it("database deleted: repl orphans still lists the instance and --reap --min-age 0 ends it", async () => {
    const { child, name } = startRun("sleep 600")
    const instance = await name
    child.kill("SIGKILL")
    await child
    for (const file of ["state.db", "state.db-wal", "state.db-shm"]) rmSync(join(home, file), { force: true })

    const listed = await run(["orphans", "--json"])
    expect(listed.exitCode).toBe(0)
    const report = JSON.parse(listed.stdout) as { orphans: Array<{ name: string; reason: string; action: string }> }
    expect(report.orphans).toContainEqual(expect.objectContaining({ name: instance, reason: "untracked", action: "listed" }))
    expect((await processesOf(instance)).length).toBeGreaterThan(0)

    const reaped = await run(["orphans", "--reap", "--min-age", "0", "--own", "--json"])
    const after = JSON.parse(reaped.stdout) as { orphans: Array<{ name: string; action: string }> }
    expect(after.orphans).toContainEqual(expect.objectContaining({ name: instance, action: "reaped" }))
    await eventually("the orphan is gone", async () => (await processesOf(instance)).length === 0)
  })

  it("orphans --reap respects --min-age and --keep", async () => {
    const { child, name } = startRun("sleep 600")
    const instance = await name
    child.kill("SIGKILL")
    await child
    for (const file of ["state.db", "state.db-wal", "state.db-shm"]) rmSync(join(home, file), { force: true })
    const young = JSON.parse((await run(["orphans", "--reap", "--own", "--json"])).stdout) as { orphans: Array<{ name: string; action: string }> }
    expect(young.orphans).toContainEqual(expect.objectContaining({ name: instance, action: "too-young" }))
    const kept = JSON.parse((await run(["orphans", "--reap", "--min-age", "0", "--own", "--keep", instance, "--json"])).stdout) as { orphans: Array<{ name: string; action: string }> }
    expect(kept.orphans).toContainEqual(expect.objectContaining({ name: instance, action: "kept" }))
    expect((await processesOf(instance)).length).toBeGreaterThan(0)
    // A --keep that no instance can be named (here the instance's id, the name's last part)
    // protected nothing: the instance meant was reaped. It is refused before anything is swept.
    const id = instance.split("-").at(-1) ?? ""
    const refused = await run(["orphans", "--reap", "--min-age", "0", "--own", "--keep", id, "--json"])
    const line = `--keep: "${id}" is not an instance name (repl-CONTROL-MANIFEST-INSTANCE, as repl instance list and repl orphans show them)`
    expect([refused.exitCode, lines(refused.stdout).map((l) => JSON.parse(l) as unknown), lines(refused.stderr)]).toEqual([
      2,
      [{ type: "error", message: line, status: 2 }],
      [`repl: ${line}`]
    ])
    expect((await processesOf(instance)).length).toBeGreaterThan(0)
  })
})
