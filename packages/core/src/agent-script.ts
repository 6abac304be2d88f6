import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { shippedFile } from "./package-file.ts"
import type { Bootstrap, BootstrapRun } from "./provider.ts"

/**
 * Absolute path of the on-instance agent. It lives once, at the repository's `agent/`, so every
 * provider ships the very same file (local exec, cloud-init, `orbctl run`). When it is nowhere,
 * the source-relative path names what is missing.
 */
const fromThisModule = "../../../agent/skyrepl_agent.py"
const locate = (): string =>
  shippedFile(import.meta.url, fromThisModule, "@skyrepl/core", join("..", "..", "agent", "skyrepl_agent.py")) ??
  fileURLToPath(new URL(fromThisModule, import.meta.url))

export const agentScriptPath: string = locate()

export interface AgentLaunch {
  /** `exit`, `poweroff` or `command:CMD` (docs/agent-protocol.md). */
  readonly shutdown: string
  readonly workdir?: string
  readonly log?: string
  /** Leave `--url` out when the start-up script chooses the URL itself (OrbStack rewrites loopback). */
  readonly withUrl?: boolean
}

/**
 * The agent's command line for a new instance, one place for every provider. The token is
 * deliberately absent: providers pass it as `SKYREPL_AGENT_TOKEN` so `ps` never shows it.
 */
export const agentArguments = (
  name: string,
  bootstrap: Pick<Bootstrap, "agentUrl" | "heartbeatIntervalMs" | "deadmanTimeoutMs">,
  launch: AgentLaunch
): ReadonlyArray<string> => [
  ...(launch.withUrl === false ? [] : ["--url", bootstrap.agentUrl]),
  "--instance",
  name,
  "--heartbeat-interval",
  String(bootstrap.heartbeatIntervalMs / 1000),
  "--deadman-timeout",
  String(bootstrap.deadmanTimeoutMs / 1000),
  "--shutdown",
  launch.shutdown,
  ...(launch.workdir === undefined ? [] : ["--workdir", launch.workdir]),
  ...(launch.log === undefined ? [] : ["--log", launch.log])
]

/**
 * The agent's environment for a run it starts on its own at start-up (see `Bootstrap.run`).
 * Like the token it is read from the environment, which only the instance's own user can see,
 * and the agent keeps it out of the runs' environment.
 */
export const agentRunVariables = (run: BootstrapRun | undefined): Readonly<Record<string, string>> =>
  run === undefined ? {} : { SKYREPL_AGENT_RUN: JSON.stringify(run) }
