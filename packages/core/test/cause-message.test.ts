import { describe, expect, it } from "vitest"
import { describeCause } from "../src/cause-message.ts"

describe("describeCause", () => {
  it("is an error's message, without the `Error: ` that String() puts before it", () => {
    const error = Object.assign(new Error("ENOTDIR: not a directory, lstat '/x/y'"), { code: "ENOTDIR" })
    expect(String(error)).toBe("Error: ENOTDIR: not a directory, lstat '/x/y'")
    expect(describeCause(error)).toBe("ENOTDIR: not a directory, lstat '/x/y'")
  })

  it("reads an error of another realm by its message, and says something for anything else", () => {
    expect(describeCause({ name: "Error", message: "EROFS: read-only file system" })).toBe("EROFS: read-only file system")
    expect(describeCause(new TypeError(""))).toBe("TypeError")
    expect(describeCause("plain text")).toBe("plain text")
    expect(describeCause(42)).toBe("42")
  })
})
