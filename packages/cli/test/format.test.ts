import { describe, expect, it } from "vitest"
import { colorState, table, truncate } from "../src/format.ts"

describe("table", () => {
  it("shows a cell's control characters escaped, on one line, with or without colour", () => {
    for (const color of [false, true]) {
      const out = table(["A", "B"], [["one\ntwo\tthree", "\u001b[2J\u001b]0;title\u0007\u202eevil\u0085"]], color)
      const rows = out.split("\n")
      expect(rows).toHaveLength(3)
      expect(rows[1]).toBe("one\\ntwo\\tthree  \\x1b[2J\\x1b]0;title\\x07\\u202eevil\\x85")
    }
  })

  it("keeps colorState's colours when colour is on, and escapes any other escape sequence", () => {
    const out = table(["STATE", "COMMAND"], [[colorState("failed", true), "printf \u001b[31mred"]], true)
    const row = out.split("\n")[1]
    expect(row).toBe("\u001b[31mfailed\u001b[0m  printf \\x1b[31mred")
    // A data cell with an unbalanced or unknown sequence is data, whatever the colour setting.
    expect(table(["A"], [["\u001b[31mred"], ["\u001b[1A\u001b[0m"]], true).split("\n").slice(1, 3)).toEqual(["\\x1b[31mred", "\\x1b[1A\\x1b[0m"])
  })
})

describe("table columns", () => {
  it("are as wide as their widest cell in a terminal's columns: a wide character takes two", () => {
    const out = table(["NAME", "X"], [["日本", "1"], ["ab", "2"], ["e\u0301", "3"]], false)
    expect(out.split("\n")).toEqual(["NAME  X", "日本  1", "ab    2", "e\u0301     3", ""])
  })
})

describe("truncate", () => {
  it("cuts between characters: never inside an emoji, a flag or a letter and its accent", () => {
    // An emoji or a flag takes two columns, a letter with its accent one.
    expect(truncate(`${"a".repeat(59)}😀😀`, 60)).toBe(`${"a".repeat(59)}…`)
    expect(truncate(`${"a".repeat(56)}😀😀`, 60)).toBe(`${"a".repeat(56)}😀😀`)
    expect(truncate(`${"a".repeat(57)}😀😀`, 60)).toBe(`${"a".repeat(57)}😀…`)
    expect(truncate(`${"a".repeat(57)}👍🏽bc`, 60)).toBe(`${"a".repeat(57)}👍🏽…`)
    expect(truncate(`${"a".repeat(56)}🇫🇷🇫🇷x`, 60)).toBe(`${"a".repeat(56)}🇫🇷…`)
    expect(truncate(`${"a".repeat(58)}e\u0301e\u0301x`, 60)).toBe(`${"a".repeat(58)}e\u0301…`)
    expect(truncate("short", 60)).toBe("short")
    expect(truncate("abc", 0)).toBe("…")
  })

  it("counts a wide character as the two columns a terminal gives it", () => {
    expect(truncate("日本語のコマンド", 10)).toBe("日本語の…")
    expect(truncate("日本語の", 8)).toBe("日本語の")
  })

  it("escapes control characters, counts an escape as its length and never cuts one in two", () => {
    expect(truncate("a\nb", 10)).toBe("a\\nb")
    expect(truncate(`${"a".repeat(7)}\u001bbc`, 10)).toBe(`${"a".repeat(7)}…`)
    expect(truncate(`${"a".repeat(5)}\u001bbc`, 10)).toBe(`${"a".repeat(5)}\\x1b…`)
  })
})
