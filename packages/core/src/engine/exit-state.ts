import { consoleLines } from "../console-lines.ts"
import type { ExitReport } from "../hub/protocol.ts"
import type { TerminalRunState } from "./lifecycle.ts"

/** How a run ends, by its agent's exit report. */
export const stateOfExit = (report: ExitReport): { readonly state: TerminalRunState; readonly error: string | null } => {
  if (report.refused !== undefined) {
    // The agent's own words, but outside input: made printable and one line (an error is one
    // line at the CLI), each line cut as a console's is, in case an agent sends more.
    const why = consoleLines(report.refused, 3).join(" / ")
    return { state: "failed", error: `the agent refused the run: ${why === "" ? "no reason given" : why}` }
  }
  switch (report.reason) {
    case "cancelled":
      return { state: "cancelled", error: null }
    case "timed_out":
      return { state: "timed_out", error: "maxDuration exceeded" }
    case "deadman":
      return { state: "failed", error: "the agent lost its controller and ended the run (dead-man switch)" }
    case "exited":
      return report.exitCode === 0 ? { state: "succeeded", error: null } : { state: "failed", error: null }
  }
}
