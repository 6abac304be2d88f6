import type { RunResult } from "@skyrepl/core"
import { describe, expect, it } from "vitest"
import { endLine, exitStatusOf } from "../src/commands/run.ts"

const result = (fields: Partial<RunResult>): RunResult => ({ runId: "r1", state: "succeeded", exitCode: 0, signal: null, error: null, ...fields })

describe("repl run's exit status and closing line", () => {
  it("a run that failed although its command exited 0 (its output was lost) exits 1 and says why", () => {
    const lost = result({ state: "failed", exitCode: 0, error: "the run's output is incomplete" })
    expect(exitStatusOf(lost)).toBe(1)
    expect(endLine(lost)).toBe("repl: run r1 failed: the run's output is incomplete\n")
  })

  it("the failure line shows what the agent or the provider said as one line of printable text", () => {
    // A refused run quotes its workdir as given; its escape sequence would reach the terminal.
    const refused = result({ state: "failed", exitCode: null, error: "the agent refused the run: workdir '/a\u001b[31m\nb' is not a directory" })
    expect(endLine(refused)).toBe("repl: run r1 failed: the agent refused the run: workdir '/a\\x1b[31m\\nb' is not a directory\n")
  })

  it("otherwise the command's own status, 128 + a signal's number, 124 and 130", () => {
    expect(exitStatusOf(result({}))).toBe(0)
    expect(exitStatusOf(result({ state: "failed", exitCode: 3 }))).toBe(3)
    expect(endLine(result({ state: "failed", exitCode: 3 }))).toBeNull()
    expect(exitStatusOf(result({ state: "failed", exitCode: null, signal: "SIGKILL" }))).toBe(137)
    expect(exitStatusOf(result({ state: "timed_out", exitCode: 0 }))).toBe(124)
    expect(exitStatusOf(result({ state: "cancelled", exitCode: 0 }))).toBe(130)
  })
})
