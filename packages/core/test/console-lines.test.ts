import { describe, expect, it } from "vitest"
import { consoleLines } from "../src/console-lines.ts"

describe("consoleLines", () => {
  it("keeps the last non-empty lines, each one printable line", () => {
    expect(consoleLines("one\r\n\ntwo\tcolumns\u001b[31m\nthree\n\n", 2)).toEqual(["two columns [31m", "three"])
    expect(consoleLines("", 5)).toEqual([])
  })

  it("drops a first line cut by a read that started inside it, unless it is all there is", () => {
    expect(consoleLines("ial line\nwhole line\n", 5, true)).toEqual(["whole line"])
    expect(consoleLines("only a part", 5, true)).toEqual(["only a part"])
  })

  it("cuts a line too long for an error message", () => {
    const [line] = consoleLines("x".repeat(1_000), 1)
    expect(line).toBe(`${"x".repeat(240)}…`)
  })
})
