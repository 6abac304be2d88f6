import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import type { Bootstrap, BootstrapRun } from "./provider.ts"

const relative = join("agent", "skyrepl_agent.py")

/**
 * Absolute path of the on-instance agent. It lives once, at the repository's `agent/`, so every
 * provider ships the very same file (local exec, cloud-init, `orbctl run`). Found from this
 * module's own location, or — when this code was bundled into another file (the CLI bundle) —
 * from where `@skyrepl/core` is installed.
 */
const locate = (): string => {
  const fromSource = fileURLToPath(new URL("../../../agent/skyrepl_agent.py", import.meta.url))
  if (existsSync(fromSource)) return fromSource
  try {
    const core = dirname(createRequire(import.meta.url).resolve("@skyrepl/core/package.json"))
    const fromPackage = join(core, "..", "..", relative)
    if (existsSync(fromPackage)) return fromPackage
  } catch {
    // Not resolvable from here: fall through to the source-relative path, which names what is missing.
  }
  return fromSource
}

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
