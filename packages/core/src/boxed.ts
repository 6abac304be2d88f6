/**
 * Boxed primitives (`new String("x")`, `new Number(5)`, `new Boolean(false)`, `Object(10n)`) in
 * input given from plain JavaScript. A schema refuses one, but its message prints the value as
 * the primitive ("command: Expected string, actual x"), which reads as a contradiction; a
 * `new Boolean(false)` is truthy, so code that tested it rather than decoded it did the opposite.
 */

/** How a boxed primitive is written, or null when `value` is none. */
export const boxedShown = (value: unknown): string | null => {
  if (typeof value !== "object" || value === null) return null
  if (value instanceof String) return `new String(${JSON.stringify(value.valueOf())})`
  if (value instanceof Number) return `new Number(${String(value.valueOf())})`
  if (value instanceof Boolean) return `new Boolean(${String(value.valueOf())})`
  if (value instanceof BigInt) return `Object(${String(value.valueOf())}n)`
  if (value instanceof Symbol) return `Object(${String(value.valueOf())})`
  return null
}

const kindOf = (shown: string): string =>
  shown.startsWith("new String") ? "a string" : shown.startsWith("new Number") ? "a number" : shown.startsWith("new Boolean") ? "a boolean" : "a primitive"

/** The message for a boxed primitive at `path` (empty: the value itself). */
export const boxedMessage = (path: string, shown: string): string =>
  `${path === "" ? "" : `${path}: `}${shown} is an object, not ${kindOf(shown)}; give the value itself`

const isPlain = (value: object): boolean => {
  const proto: unknown = Object.getPrototypeOf(value)
  return Array.isArray(value) || proto === Object.prototype || proto === null
}

/**
 * The first boxed primitive in `given` or in the plain objects and arrays it holds, as a message
 * naming where it is (`env.A: new String("y") is an object, not a string; give the value
 * itself`, after `inner`); null when there is none. `given` itself boxed is `{whole} must be an
 * object, not new String("x")`. Other objects (a `Duration`, a `Layer`, a `Schedule`) are not
 * looked into: they are not made by hand.
 */
export const boxedPrimitiveProblem = (given: unknown, whole: string, inner = ""): string | null => {
  const seen = new Set<object>()
  const visit = (value: unknown, path: string, depth: number): string | null => {
    const shown = boxedShown(value)
    if (shown !== null) return path === "" ? `${whole} must be an object, not ${shown}` : `${inner}${boxedMessage(path, shown)}`
    if (typeof value !== "object" || value === null || depth > 8 || seen.has(value) || !isPlain(value)) return null
    seen.add(value)
    for (const key of Object.keys(value)) {
      const found = visit(Reflect.get(value, key), path === "" ? key : `${path}.${key}`, depth + 1)
      if (found !== null) return found
    }
    return null
  }
  return visit(given, "", 0)
}
