import { shippedFile } from "@skyrepl/core"
import { spawnSync } from "node:child_process"
import { join } from "node:path"
import type { AwsCredentials } from "./options.ts"

/** What terminate-at-exit.mjs reads on stdin: the instances, and how to reach EC2 as the provider does. */
export interface ExitTermination {
  readonly region: string
  readonly endpoint: string | null
  readonly profile: string | null
  readonly credentials: AwsCredentials | null
  /** Instances known to be the one to terminate. */
  readonly ids: ReadonlyArray<string>
  /** Also terminate every live instance carrying `name` and `managedTag` (when `ids` may not be all). */
  readonly searchByName: boolean
  readonly name: string
  readonly managedTag: string
  /**
   * The instance may exist and not be listed yet (created moments ago): then finding nothing is
   * not taken for gone, and the child looks again until `giveUpAt`.
   */
  readonly mayBeInvisible: boolean
}

/** What the child reads: the request, and when it stops looking for an instance not listed yet. */
interface HelperRequest extends ExitTermination {
  /** Epoch milliseconds. */
  readonly giveUpAt: number
}

/** Left of the caller's time when the child stops looking again, for it to say so and exit. */
const GIVE_UP_MARGIN_MS = 500

const helperName = "terminate-at-exit.mjs"

/**
 * Terminates instances from a process that is exiting, synchronously: a child process makes the
 * AWS calls while this one waits, for at most `timeoutMs`. Returns null when EC2 accepted the
 * termination, else why not (the caller reports it; the layers after this one take over).
 *
 * The child runs under this process's own runtime (`process.execPath`, Node or Bun) and
 * inherits its environment, so the SDK's credential chain finds what it found here; what was
 * given in code (endpoint, profile, static credentials) goes on stdin.
 */
export const terminateWhileExiting = (request: ExitTermination, timeoutMs: number): string | null => {
  // In an executable built with `bun build --compile`, process.execPath is the user's program:
  // started with the helper's path, it would run that program again, not the helper.
  if (process.versions["bun"] !== undefined && import.meta.url.includes("/$bunfs/")) {
    return "a compiled Bun executable has no separate runtime to run the terminating process"
  }
  const helper = shippedFile(import.meta.url, `./${helperName}`, "@skyrepl/provider-aws", join("src", helperName))
  if (helper === null) return `${helperName} is not installed next to the AWS provider`
  const input: HelperRequest = { ...request, giveUpAt: Date.now() + timeoutMs - GIVE_UP_MARGIN_MS }
  const child = spawnSync(process.execPath, [helper], {
    input: JSON.stringify(input),
    stdio: ["pipe", "ignore", "pipe"],
    timeout: timeoutMs,
    killSignal: "SIGKILL",
    encoding: "utf8"
  })
  if (child.error !== undefined) {
    return child.error.message.includes("ETIMEDOUT") ? `no answer from EC2 within ${timeoutMs} ms` : child.error.message
  }
  if (child.status === 0) return null
  const said = child.stderr.trim().split("\n").at(-1) ?? ""
  return said === "" ? `the terminating process ended with ${child.status ?? child.signal}` : said
}
