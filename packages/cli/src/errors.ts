import { describeConfigError } from "@skyrepl/core"
import { Cause, ConfigError, Data } from "effect"

/** A flag's value that clipanion accepted as a string but the command cannot use. */
export class UsageFailure extends Data.TaggedError("UsageFailure")<{ readonly message: string }> {}

/**
 * A flag that takes one value given more than once (`repl run -c A -c B`), with the names it
 * was given by. Thrown, not failed: it is found while clipanion reads the words, which reports
 * its own parse errors by throwing too, and main.ts says it with the command it was given to.
 */
export class RepeatedFlag extends Data.TaggedError("RepeatedFlag")<{ readonly names: ReadonlyArray<string> }> {}

const usageTags = new Set(["UsageFailure", "UnknownProvider", "ProviderMisconfigured", "InvalidSpec", "InvalidLaunchOptions", "InvalidScanOptions", "InvalidSnapshotName", "InvalidSnapshotId", "Unsupported"])

/**
 * Errors whose message is one line of SkyREPL's own words around what the user gave (a run id,
 * a flag's value): a newline in it is the user's, and the line is shown whole, escaped (see
 * `tellFailure`). Another error's message may be a library's several lines; its first says what
 * is wrong.
 */
const ownLineTags = new Set([...usageTags, "RunNotFound", "InstanceNotFound"])

const tagOf = (error: unknown): string | null =>
  typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string" ? error._tag : null

const messageOf = (error: unknown): string => {
  if (error instanceof Error) return error.message
  return String(error)
}

/**
 * The one line a user sees for a failure, and the exit status: 2 for input the user can fix
 * (usage, unknown provider, invalid spec or option, bad configuration), 1 for everything else.
 */
export const explain = (cause: Cause.Cause<unknown>): { readonly line: string; readonly code: number } => {
  const error = Cause.squash(cause)
  const tag = tagOf(error)
  const message = messageOf(error)
  const base = (tag !== null && ownLineTags.has(tag) ? message : message.split("\n")[0]) ?? "unknown error"
  if (
    tag === "InvalidSpec" &&
    typeof error === "object" &&
    error !== null &&
    "validForms" in error &&
    Array.isArray(error.validForms) &&
    error.validForms.length > 0
  ) {
    return { line: `${base} (valid forms: ${error.validForms.join(", ")})`, code: 2 }
  }
  if (tag !== null && usageTags.has(tag)) return { line: base, code: 2 }
  // A SKYREPL_* variable that does not parse.
  if (ConfigError.isConfigError(error)) return { line: `configuration: ${describeConfigError(error)}`, code: 2 }
  if (Cause.isDie(cause) && tag === null) return { line: `internal error: ${base}`, code: 1 }
  return { line: base, code: 1 }
}
