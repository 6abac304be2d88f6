import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

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
