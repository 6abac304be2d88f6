import { fileURLToPath } from "node:url"

/**
 * Absolute path of the on-instance agent. It lives once, at the repository's `agent/`, so
 * every provider ships the very same file (local exec, cloud-init, `orbctl run`).
 */
export const agentScriptPath: string = fileURLToPath(new URL("../../../agent/skyrepl_agent.py", import.meta.url))
