import stringWidth from "string-width"
import { printable } from "./printable.ts"

/** Colours only for a terminal, and never when NO_COLOR is set (https://no-color.org). */
export const useColor = (stream: { readonly isTTY?: boolean }): boolean =>
  stream.isTTY === true && (process.env["NO_COLOR"] ?? "") === "" && process.env["TERM"] !== "dumb"

const paint = (code: number) => (text: string, on: boolean) => (on ? `\u001b[${code}m${text}\u001b[0m` : text)
export const dim = paint(2)
export const bold = paint(1)
export const red = paint(31)
export const green = paint(32)
export const yellow = paint(33)

let segmenter: Intl.Segmenter | undefined

/** User-perceived characters (grapheme clusters): an emoji, a flag or a letter with its accents is one. */
const graphemes = (text: string): Iterable<{ readonly segment: string }> => (segmenter ??= new Intl.Segmenter()).segment(text)

export const colorState = (state: string, on: boolean): string => {
  switch (state) {
    case "succeeded":
    case "ready":
    case "allocated":
    case "active":
      return green(state, on)
    case "failed":
    case "timed_out":
      return red(state, on)
    case "running":
    case "spawning":
    case "booting":
    case "provisioning":
    case "terminating":
      return yellow(state, on)
    default:
      return state
  }
}

/** Time since `ms` in a compact form: `4s`, `12m`, `3h`, `2d`. */
export const ago = (ms: number | null, now: number = Date.now()): string => {
  if (ms === null) return "-"
  const s = Math.max(0, Math.round((now - ms) / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.round(s / 60)}m`
  if (s < 86400) return `${Math.round(s / 3600)}h`
  return `${Math.round(s / 86400)}d`
}

/**
 * Columns `text` takes in a terminal: a wide character (CJK, most emoji) two, an accent none,
 * colour codes none. UTF-16 units miscounted both, and misaligned a table's columns.
 */
const columns = (text: string): number => stringWidth(text)

/** A text in one of `paint`'s colours above (bold, dim, red, green, yellow), and nothing else. */
const PAINTED = /^\u001b\[(?:1|2|31|32|33)m([^\u001b]*)\u001b\[0m$/u

/**
 * A cell as one line of printable text. With colour on, a cell that is exactly what `paint` makes
 * of printable text (`colorState`'s) keeps its colour; any other control character is data (a
 * run's command, a provider's message) and is shown escaped.
 */
const cellText = (cell: string, color: boolean): string => {
  const painted = color ? PAINTED.exec(cell) : null
  return painted !== null && printable(painted[1]!) === painted[1] ? cell : printable(cell)
}

/** A plain aligned table; `cells` may hold `colorState`'s colours, and any text (shown escaped). */
export const table = (headers: ReadonlyArray<string>, data: ReadonlyArray<ReadonlyArray<string>>, color: boolean): string => {
  const rows = data.map((row) => row.map((cell) => cellText(cell, color)))
  const widths = headers.map((h, i) => Math.max(columns(h), ...rows.map((r) => columns(r[i] ?? ""))))
  const line = (cells: ReadonlyArray<string>) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + " ".repeat((widths[i] ?? 0) - columns(c))))
      .join("  ")
      .trimEnd()
  return [bold(line(headers), color), ...rows.map(line)].join("\n") + "\n"
}

export const toJson = (value: unknown): string => JSON.stringify(value, null, 2) + "\n"

/**
 * `text` as printable text (see `printable`) of at most `max` columns, its end replaced by `…`
 * when it is longer. A cut falls between grapheme clusters, so it never splits an emoji (which
 * became U+FFFD when a cut fell between its UTF-16 halves) or a letter from its accent; a wide
 * character counts two columns, and an escape (`\x1b`) its length, kept whole or left out.
 */
export const truncate = (text: string, max: number): string => {
  const line = printable(text)
  // Printable ASCII is a column a unit: the common case needs no segmenting.
  if (line.length <= max && /^[\x20-\x7e]*$/.test(line)) return line
  if (columns(line) <= max) return line
  let width = 0
  let shown = ""
  let kept = ""
  for (const { segment } of graphemes(text)) {
    const part = printable(segment)
    width += columns(part)
    if (width > max) return kept + "…"
    shown += part
    // Room is kept for the "…" (one column).
    if (width < max) kept = shown
  }
  return line
}
