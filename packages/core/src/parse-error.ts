import { ParseResult } from "effect"

/**
 * A decoding failure as one line a user can act on, e.g. `command must not be empty` or
 * `env.1X: expected a string, got 5`.
 *
 * A ParseError's own message is a tree that starts with the whole schema's type, so its first
 * line (all a CLI prints) names no field and no reason. Each issue here is its path and its
 * message. An optional field's second branch ("Expected undefined, actual …") is dropped when
 * a failure at or below the field is there, as it only restates that the field was given.
 */
export const describeParseError = (error: ParseResult.ParseError): string => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const failed = issues.filter((i) => !isOptionalBranch(i)).map((i) => i.path)
  const explained = (path: ReadonlyArray<PropertyKey>) => failed.some((other) => path.every((key, k) => other[k] === key))
  const kept = issues.filter((i) => !isOptionalBranch(i) || !explained(i.path))
  const lines = kept.map((issue) => {
    const path = pathText(issue.path)
    const message = issue.message
    // A message written for the field (`command must not be empty`) already names it.
    if (path === "" || message.startsWith(`${path} `)) return message
    return issue._tag === "Unexpected" ? `${path} ${message}` : `${path}: ${message}`
  })
  return lines.length === 0 ? error.message.split("\n")[0] ?? "invalid input" : [...new Set(lines)].join("; ")
}

const isOptionalBranch = (issue: ParseResult.ArrayFormatterIssue): boolean =>
  issue._tag === "Type" && issue.message.startsWith("Expected undefined, actual ")

const pathText = (path: ReadonlyArray<PropertyKey>): string => path.map((key) => String(key)).join(".")
