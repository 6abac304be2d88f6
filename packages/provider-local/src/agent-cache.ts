import { spawn } from "node:child_process"
import { existsSync, mkdirSync, readFileSync, realpathSync, statSync } from "node:fs"
import { basename, join } from "node:path"
import { endGroupLeftovers } from "./local-api.ts"

/**
 * Compiled copies of the agent script. Python compiles a script it is given by path on every
 * start (it caches bytecode only for imported modules), and for the 1,200-line agent that is
 * about a third of its start-up, which every launch waits for. Python runs a `.pyc` file
 * directly, so the provider keeps one per (script content, interpreter) and starts the agent
 * from it.
 *
 * The first launch runs the source as before and compiles the copy in the background (with the
 * very interpreter that will run it, so the bytecode's magic number matches); later launches,
 * in this process or any other using the same home, start from the copy. The key covers the
 * script's bytes and the interpreter's file, so editing the agent or upgrading Python simply
 * makes a new copy.
 */
export interface AgentCache {
  /** The file to hand the interpreter: the compiled copy when there is one, else `script`. */
  readonly pathFor: (script: string, python: string) => string
}

// The compile outlives the process that started it (it is detached, so a short CLI command does
// not wait for it); the alarm bounds it on its own: compiling the agent takes well under a second.
const compileScript =
  "import os, py_compile, signal, sys\n" +
  "signal.alarm(60)\n" +
  "py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)\n" +
  "os.replace(sys.argv[2], sys.argv[3])\n"

export const makeAgentCache = (dir: string): AgentCache => {
  /** Keys by script path, kept while the script's size and mtime stay the same. */
  const keys = new Map<string, { readonly stamp: string; readonly key: string }>()
  const compiling = new Set<string>()

  const keyOf = (script: string, python: string): string => {
    const st = statSync(script)
    const stamp = `${st.size}:${st.mtimeMs}`
    const known = keys.get(`${script}\0${python}`)
    if (known !== undefined && known.stamp === stamp) return known.key
    const real = realpathSync(python)
    const py = statSync(real)
    // Taken here, not imported: node:crypto loads the stream modules, and every CLI command
    // that builds this provider (a listing too) would pay for them.
    const key = process.getBuiltinModule("node:crypto").createHash("sha256")
      .update(readFileSync(script))
      .update(`\0${real}\0${py.size}:${py.mtimeMs}`)
      .digest("hex")
      .slice(0, 24)
    keys.set(`${script}\0${python}`, { stamp, key })
    return key
  }

  const compile = (script: string, python: string, target: string) => {
    if (compiling.has(target)) return
    compiling.add(target)
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 })
      // A private temporary name, renamed into place by Python once written: a reader never
      // sees half a file, and two processes compiling at once each write their own.
      const temp = `${target}.${process.pid}.${Date.now()}.tmp`
      const child = spawn(python, ["-S", "-c", compileScript, script, temp, target], { stdio: "ignore", detached: true })
      child.on("error", () => compiling.delete(target))
      child.on("exit", () => {
        endGroupLeftovers(child.pid)
        compiling.delete(target)
      })
      child.unref()
    } catch {
      // No copy this time: the source still runs, only slower.
      compiling.delete(target)
    }
  }

  return {
    pathFor: (script, python) => {
      let key: string
      try {
        key = keyOf(script, python)
      } catch {
        return script
      }
      const target = join(dir, `${basename(script).replace(/\.py$/, "")}-${key}.pyc`)
      if (existsSync(target)) return target
      compile(script, python, target)
      return script
    }
  }
}
