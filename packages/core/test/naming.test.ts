import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { formatInstanceName, idTime, instanceNameTime, isInstanceName, newControlId, newId, parseInstanceName } from "../src/naming.ts"

describe("instance names", () => {
  it("format and parse are inverse", () => {
    const parts = { controlId: newControlId(), manifestId: newId(), instanceId: newId() }
    const name = formatInstanceName(parts)
    expect(name).toMatch(/^repl-[0-9a-z]{8}-[0-9a-z]{14}-[0-9a-z]{14}$/)
    expect(Either.getOrThrow(parseInstanceName(name))).toEqual(parts)
    expect(isInstanceName(name)).toBe(true)
  })

  it("fits in a hostname label", () => {
    const name = formatInstanceName({ controlId: newControlId(), manifestId: newId(), instanceId: newId() })
    expect(name.length).toBeLessThanOrEqual(63)
  })

  it.each(["repl-abc", "REPL-0d5qypv7-mwrd7anuqp0rws-mwrd7anu8qnt4u", "repl-0d5qypv7-mwrd7anuqp0rws-mwrd7anu8qnt4u-x", "vm-0d5qypv7-mwrd7anuqp0rws-mwrd7anu8qnt4u", ""])(
    "refuses %j",
    (name) => {
      expect(Either.isLeft(parseInstanceName(name))).toBe(true)
      expect(isInstanceName(name)).toBe(false)
    }
  )

  it("ids carry their creation time and sort by it", () => {
    const t = Date.UTC(2026, 10, 22, 12, 0, 0)
    const a = newId(t)
    const b = newId(t + 1)
    expect(idTime(a)).toBe(t)
    expect(a < b).toBe(true)
    const name = formatInstanceName({ controlId: newControlId(), manifestId: newId(t), instanceId: newId(t) })
    expect(instanceNameTime(name)).toBe(t)
  })

  it("ids made in the same millisecond differ", () => {
    const t = Date.now()
    const ids = new Set(Array.from({ length: 2000 }, () => newId(t)))
    expect(ids.size).toBe(2000)
  })
})
