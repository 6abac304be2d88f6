// Apart from format.ts (which loads string-width): print.ts uses it, and entry.ts loads print.ts
// before anything else.

/**
 * Characters that would break a table's line or reach the terminal as an instruction: C0 and C1
 * controls (newline, tab, escape…) and DEL, the Unicode line and paragraph separators, and the
 * bidirectional marks and overrides, which reorder the text around them.
 */
const UNPRINTABLE = /[\p{Cc}\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu

const escaped = (c: string): string => {
  if (c === "\n") return "\\n"
  if (c === "\r") return "\\r"
  if (c === "\t") return "\\t"
  const code = c.codePointAt(0) ?? 0
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`
}

/**
 * `text` as one line of printable text: control characters shown as escapes (`\n`, `\t`, `\x1b`).
 * For a table's cells and for `repl`'s own lines on stderr, which quote what the user gave.
 */
export const printable = (text: string): string => text.replace(UNPRINTABLE, escaped)
