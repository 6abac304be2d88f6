import { Either, ParseResult, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { describeParseError } from "../src/parse-error.ts"

const Options = Schema.Struct({
  command: Schema.String.pipe(Schema.nonEmptyString({ message: () => "command must not be empty" })),
  retries: Schema.optional(Schema.Number),
  env: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  nested: Schema.optional(Schema.Struct({ path: Schema.String.pipe(Schema.startsWith("/")) }))
})

const fails = (input: unknown): ParseResult.ParseError => {
  const decoded = Schema.decodeUnknownEither(Options)(input, { onExcessProperty: "error" })
  if (Either.isRight(decoded)) throw new Error(`decoded ${JSON.stringify(input)}`)
  return decoded.left
}

describe("describeParseError", () => {
  it("gives a message written for the field as it is", () => {
    expect(describeParseError(fails({ command: "" }))).toBe("command must not be empty")
  })

  it("names the path of a field that failed, without the optional field's other branch", () => {
    expect(describeParseError(fails({ command: "x", retries: "3" }))).toBe('retries: Expected number, actual "3"')
    expect(describeParseError(fails({ command: "x", env: { A: 5 } }))).toBe("env.A: Expected string, actual 5")
  })

  it("names a field that is not expected", () => {
    expect(describeParseError(fails({ command: "x", bogus: 1 }))).toMatch(/^bogus is unexpected, expected: "command"/)
  })

  it("is one line, where the tree a ParseError prints starts with the schema's whole type", () => {
    const error = fails({ command: "x", nested: { path: "relative" } })
    expect(error.message.split("\n")[0]).toMatch(/^\{ readonly command: nonEmptyString; /)
    expect(describeParseError(error)).toBe('nested.path: Expected a string starting with "/", actual "relative"')
  })
})
