// The cases tell the test that runs them what they launched, through files named in the
// environment: CASE_RECORD collects `label name` lines, CASE_READY says a case is holding its run.
import { LocalApi } from "@skyrepl/provider-local"
import { Effect } from "effect"
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs"

const required = (variable: string): string => {
  const value = process.env[variable]
  if (value === undefined || value === "") throw new Error(`${variable} is not set: these cases are run by examples/test`)
  return value
}

export const home = (): string => required("SKYREPL_HOME")

export const record = (label: string, name: string): void => appendFileSync(required("CASE_RECORD"), `${label} ${name}\n`)

export const recorded = (): ReadonlyArray<{ readonly label: string; readonly name: string }> => {
  const path = required("CASE_RECORD")
  if (!existsSync(path)) return []
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => {
      const [label = "", name = ""] = line.split(" ")
      return { label, name }
    })
}

export const ready = (name: string): void => writeFileSync(required("CASE_READY"), name)

export const isRunning = (name: string): Promise<boolean> =>
  Effect.runPromise(LocalApi.scanProcesses.pipe(Effect.map((ps) => ps.some((p) => p.instance === name && LocalApi.isLive(p)))))

/** Resolves when `check` holds, or after `timeoutMs` with whatever it says then. */
export const within = async (timeoutMs: number, check: () => boolean): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs
  while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  return check()
}

/** A test body that never ends on its own: the runner's timeout or a SIGKILL ends it. */
export const forever = (): Promise<never> => new Promise<never>(() => {})
