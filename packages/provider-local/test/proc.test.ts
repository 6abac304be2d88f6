import { Effect } from "effect"
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { LocalApi } from "../src/index.ts"

const stat = (pid: number, comm: string, state: string, ppid: number, pgid: number, sid: number, start: number) =>
  `${pid} (${comm}) ${state} ${ppid} ${pgid} ${sid} 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 ${start} 1000 200 18446744073709551615\n`

const proc = (
  pid: number,
  ppid: number,
  instance: string | null,
  extra: Partial<LocalApi.ProcessInfo> = {}
): LocalApi.ProcessInfo => ({
  pid,
  ppid,
  pgid: pid,
  sid: pid,
  state: "S",
  startTicks: pid,
  instance,
  provider: instance === null ? null : "local",
  ...extra
})

describe("/proc parsing", () => {
  it("reads stat fields after a command name holding spaces and parentheses", () => {
    expect(LocalApi.parseStat(stat(42, "a) (b c", "S", 7, 42, 40, 12345))).toEqual({
      pid: 42,
      ppid: 7,
      pgid: 42,
      sid: 40,
      state: "S",
      startTicks: 12345
    })
  })

  it("refuses malformed stat lines instead of guessing", () => {
    expect(LocalApi.parseStat("")).toBeNull()
    expect(LocalApi.parseStat("42 (x S 1 2 3")).toBeNull()
    expect(LocalApi.parseStat("42 (x) S one 2 3")).toBeNull()
    expect(LocalApi.parseStat("42 (x) S 1 2")).toBeNull()
  })

  it("reads a process's pid in its innermost pid namespace from NSpid, only when it is nested", () => {
    const status = (nspid: string) => `Name:\tpython3\nTgid:\t4242\nPid:\t4242\n${nspid}PPid:\t4241\n`
    expect(LocalApi.innermostPid(status("NSpid:\t4242\t1\n"))).toBe(1)
    expect(LocalApi.innermostPid(status("NSpid:\t4242\t87\t1\n"))).toBe(1)
    expect(LocalApi.innermostPid(status("NSpid:\t4242\t17\n"))).toBe(17)
    expect(LocalApi.innermostPid(status("NSpid:\t4242\n"))).toBeNull()
    expect(LocalApi.innermostPid(status(""))).toBeNull()
  })

  it("finds the markers in a NUL-separated environment, in any position", () => {
    const environ = Buffer.from("PATH=/bin\0SKYREPL_SANDBOX_PROVIDER=local\0X=SKYREPL_INSTANCE=no\0SKYREPL_INSTANCE=repl-a\0")
    expect(LocalApi.parseMarkers(environ)).toEqual({ instance: "repl-a", provider: "local" })
    expect(LocalApi.parseMarkers(Buffer.from("SKYREPL_INSTANCE=last"))).toEqual({ instance: "last", provider: null })
    expect(LocalApi.parseMarkers(Buffer.alloc(0))).toEqual({ instance: null, provider: null })
    expect(LocalApi.parseMarkers(Buffer.from([0xff, 0, 0xfe, 0]))).toEqual({ instance: null, provider: null })
  })

  it("reads a forked sandbox's markers before the rest of its fork server's room, and an entry after an empty one", () => {
    const forked = Buffer.concat([Buffer.from("PATH=/bin\0SKYREPL_INSTANCE=repl-f\0SKYREPL_SANDBOX_PROVIDER=local\0"), Buffer.alloc(60_000)])
    expect(LocalApi.parseMarkers(forked)).toEqual({ instance: "repl-f", provider: "local" })
    // An empty entry that is not the end: what follows it still counts.
    const gap = Buffer.concat([Buffer.from("A=1\0"), Buffer.alloc(3), Buffer.from("SKYREPL_INSTANCE=repl-g\0"), Buffer.alloc(2)])
    expect(LocalApi.parseMarkers(gap)).toEqual({ instance: "repl-g", provider: null })
  })
})

describe("remembering markers between scans", () => {
  it("an empty environment is not remembered unless the process is a kernel thread", () => {
    const user = { pid: 4242, ppid: 1 }
    // Read while an exec had set the new command name but not yet the new environment.
    expect(LocalApi.environSettled(user, new Uint8Array(0))).toBe(false)
    expect(LocalApi.environSettled(user, Buffer.from("PATH=/bin\0"))).toBe(true)
    // Gone, or another user's: nothing more to learn by reading again.
    expect(LocalApi.environSettled(user, null)).toBe(true)
    expect(LocalApi.environSettled({ pid: 77, ppid: 2 }, new Uint8Array(0))).toBe(true)
    expect(LocalApi.environSettled({ pid: 2, ppid: 0 }, new Uint8Array(0))).toBe(true)
  })
})

describe("grouping processes into sandboxes", () => {
  it("takes the topmost marked process as root and unmarked descendants as members", () => {
    const sandboxes = LocalApi.findSandboxes(
      [
        proc(10, 1, "repl-a"),
        proc(11, 10, "repl-a"),
        proc(12, 11, null, { sid: 12, pgid: 12 }),
        proc(13, 12, null),
        proc(20, 1, null)
      ],
      "local"
    )
    const sandbox = sandboxes.get("repl-a")
    expect(sandbox?.root.pid).toBe(10)
    expect(sandbox?.members.map((p) => p.pid).sort()).toEqual([10, 11, 12, 13])
    expect(sandboxes.size).toBe(1)
  })

  it("ignores zombies, other providers' markers, and leaves nested instances to themselves", () => {
    const sandboxes = LocalApi.findSandboxes(
      [
        proc(10, 1, "repl-a"),
        proc(11, 10, "repl-b"),
        proc(12, 11, null),
        proc(13, 10, "repl-a", { state: "Z" }),
        proc(30, 1, "repl-c", { provider: "elsewhere" })
      ],
      "local"
    )
    expect(sandboxes.get("repl-a")?.members.map((p) => p.pid)).toEqual([10])
    expect(sandboxes.get("repl-b")?.members.map((p) => p.pid).sort()).toEqual([11, 12])
    expect(sandboxes.has("repl-c")).toBe(false)
  })

  it("picks the earliest root when a sandbox was split by a reparented child", () => {
    const sandboxes = LocalApi.findSandboxes(
      [proc(50, 1, "repl-a", { startTicks: 900 }), proc(40, 1, "repl-a", { startTicks: 100 })],
      "local"
    )
    expect(sandboxes.get("repl-a")?.root.pid).toBe(40)
  })
})

describe("shared /proc scans", () => {
  const alive = (processes: ReadonlyArray<LocalApi.ProcessInfo>, pid: number) =>
    processes.some((p) => p.pid === pid && LocalApi.isLive(p))

  it("callers asking at once share one scan, and every answer is taken after its caller asked", async () => {
    const child = spawn("sleep", ["30"], { stdio: "ignore" })
    const pid = child.pid ?? -1
    try {
      expect(alive(await Effect.runPromise(LocalApi.freshProcesses), pid)).toBe(true)
      const gone = new Promise((resolve) => child.once("exit", resolve))
      child.kill("SIGKILL")
      await gone
      // Asked after the process ended: no scan from before may answer.
      expect(alive(await Effect.runPromise(LocalApi.freshProcesses), pid)).toBe(false)
      const answers = await Effect.runPromise(Effect.all(Array.from({ length: 50 }, () => LocalApi.freshProcesses), { concurrency: "unbounded" }))
      expect(new Set(answers).size).toBe(1)
      expect(answers[0]?.some((p) => p.pid === process.pid)).toBe(true)
    } finally {
      child.kill("SIGKILL")
    }
  })
})

describe("seeing a process end", () => {
  it("a zombie main thread whose other thread still runs is read as live and has not ended; once that thread is gone, it has", async () => {
    // The main thread exits on its own (pthread_exit) while another thread sleeps: the kernel
    // shows the process as a zombie with two threads, as it does a killed agent whose last
    // thread is still tearing its pid namespace down.
    const script = [
      "import ctypes, os, sys, threading, time",
      "threading.Thread(target=time.sleep, args=(2,)).start()",
      "time.sleep(0.1)",
      "sys.stdout.write('%d\\n' % os.getpid()); sys.stdout.flush()",
      "ctypes.CDLL(None).pthread_exit(None)"
    ].join("\n")
    const child = spawn("python3", ["-c", script], { stdio: ["ignore", "pipe", "ignore"] })
    const exited = new Promise((resolve) => child.on("exit", resolve))
    const pid = await new Promise<number>((resolve) => child.stdout.once("data", (d: Buffer) => resolve(Number(d.toString().trim()))))
    // Wait until the kernel shows the main thread as a zombie.
    const rawState = () => LocalApi.parseStat(readFileSync(`/proc/${pid}/stat`, "latin1"))?.state
    for (let i = 0; i < 100 && rawState() !== "Z"; i++) await new Promise((resolve) => setTimeout(resolve, 10))
    expect(rawState()).toBe("Z")
    const seen = Effect.runSync(LocalApi.scanProcesses).find((p) => p.pid === pid)
    if (seen === undefined) return expect.unreachable()
    expect(LocalApi.isLive(seen)).toBe(true)
    expect(LocalApi.hasEnded(seen)).toBe(false)
    await exited
    expect(LocalApi.hasEnded(seen)).toBe(true)
  })
})
