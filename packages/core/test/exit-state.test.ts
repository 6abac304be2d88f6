import { describe, expect, it } from "vitest"
import { stateOfExit } from "../src/engine/exit-state.ts"

const report = { runId: "r1", exitCode: 0, signal: null, reason: "exited" as const, stdoutBytes: 0, stderrBytes: 0 }

describe("how an exit report ends a run", () => {
  it("by its reason and exit code", () => {
    expect(stateOfExit(report)).toEqual({ state: "succeeded", error: null })
    expect(stateOfExit({ ...report, exitCode: 3 })).toEqual({ state: "failed", error: null })
    expect(stateOfExit({ ...report, exitCode: null, signal: "SIGTERM", reason: "cancelled" })).toEqual({ state: "cancelled", error: null })
    expect(stateOfExit({ ...report, exitCode: null, signal: "SIGTERM", reason: "timed_out" })).toEqual({ state: "timed_out", error: "maxDuration exceeded" })
    expect(stateOfExit({ ...report, reason: "deadman" }).state).toBe("failed")
  })

  it("a refusal fails the run with the agent's reason, whatever its exit code says", () => {
    expect(stateOfExit({ ...report, exitCode: 127, refused: "workdir '/srv' is not a directory" })).toEqual({
      state: "failed",
      error: "the agent refused the run: workdir '/srv' is not a directory"
    })
  })

  it("an agent's reason is made one printable line, cut to a length an error can carry", () => {
    const error = (refused: string) => stateOfExit({ ...report, exitCode: 127, refused }).error ?? ""
    expect(error("first\nsecond\r\n\nthird\u001b[31m")).toBe("the agent refused the run: first / second / third [31m")
    expect(error("")).toBe("the agent refused the run: no reason given")
    expect(error("\n \n")).toBe("the agent refused the run: no reason given")
    const long = error("x".repeat(10_000))
    expect(long.length).toBeLessThan(300)
    expect(long.endsWith("…")).toBe(true)
  })
})
