/**
 * Python source made smaller without changing the program: the agent travels in EC2's 16 KB of
 * user-data. Everything here works on Python's tokens, as Python's own tokenizer splits the
 * source, so no string literal is ever looked into or changed; a test checks that Python parses
 * the compacted agent to the same tree as the original once docstrings are taken out.
 */

interface Token {
  readonly kind: "name" | "number" | "string" | "op"
  readonly text: string
}

/** A statement line as Python reads it: its block depth and its tokens (no comments). */
interface LogicalLine {
  readonly depth: number
  readonly tokens: ReadonlyArray<Token>
}

/** Longest first, so that the first match is the token Python reads. */
const operators = [
  "**=", "//=", ">>=", "<<=", "...",
  "!=", "%=", "&=", "**", "*=", "+=", "-=", "->", "//", "/=", ":=", "<<", "<=", "==", ">=", ">>", "@=", "^=", "|=",
  "(", ")", "[", "]", "{", "}", ":", ",", ";", ".", "+", "-", "*", "/", "|", "&", "<", ">", "=", "%", "~", "^", "@", "!"
]
const longOperators = operators.filter((op) => op.length > 1)
const stringPrefix = /^(?:[rRuUbBfF]|[bB][rR]|[rR][bB]|[fF][rR]|[rR][fF])$/
const identifier = /[A-Za-z0-9_\u0080-\uffff]+/y
const number = /(?:0[xXoObB][0-9a-fA-F_]+|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?[jJ]?)/y
const wordChar = /[A-Za-z0-9_\u0080-\uffff]/

class Untokenizable extends Error {}

/** The end of the string literal whose quote is at `start` (one past its closing quote). */
const stringEnd = (source: string, start: number): number => {
  const quote = source[start]!
  const triple = source.startsWith(quote.repeat(3), start)
  let i = start + (triple ? 3 : 1)
  while (i < source.length) {
    const c = source[i]!
    // A backslash always keeps the next character from ending the string, raw strings included.
    if (c === "\\") i += 2
    else if (triple ? source.startsWith(quote.repeat(3), i) : c === quote) return i + (triple ? 3 : 1)
    else if (c === "\n" && !triple) break
    else i++
  }
  throw new Untokenizable(`unterminated string at ${start}`)
}

/** Python's logical lines, with INDENT/DEDENT turned into each line's depth. */
const logicalLines = (text: string): Array<LogicalLine> => {
  const source = text.replace(/\r\n?/g, "\n")
  const lines: Array<LogicalLine> = []
  const indents = [0]
  let tokens: Array<Token> = []
  let depth = 0
  let brackets = 0
  let i = 0
  while (i < source.length) {
    if (tokens.length === 0 && brackets === 0) {
      // The start of a physical line that may begin a statement: its indentation counts.
      let column = 0
      while (i < source.length && " \t\f".includes(source[i]!)) {
        column = source[i] === " " ? column + 1 : source[i] === "\t" ? (Math.floor(column / 8) + 1) * 8 : 0
        i++
      }
      if (i >= source.length) break
      if (source[i] === "\n") { i++; continue }
      if (source[i] === "#") { while (i < source.length && source[i] !== "\n") i++; continue }
      if (column > indents[indents.length - 1]!) indents.push(column)
      while (column < indents[indents.length - 1]!) indents.pop()
      if (column !== indents[indents.length - 1]) throw new Untokenizable(`inconsistent dedent at ${i}`)
      depth = indents.length - 1
    }
    const c = source[i]!
    if (c === " " || c === "\t" || c === "\f") { i++; continue }
    if (c === "#") { while (i < source.length && source[i] !== "\n") i++; continue }
    if (c === "\\" && source[i + 1] === "\n") { i += 2; continue }
    if (c === "\n") {
      i++
      if (brackets === 0 && tokens.length > 0) {
        lines.push({ depth, tokens })
        tokens = []
      }
      continue
    }
    if (c === "'" || c === '"') {
      const end = stringEnd(source, i)
      tokens.push({ kind: "string", text: source.slice(i, end) })
      i = end
      continue
    }
    number.lastIndex = i
    const numeric = /[0-9]/.test(c) || (c === "." && /[0-9]/.test(source[i + 1] ?? "")) ? number.exec(source) : null
    if (numeric !== null) {
      tokens.push({ kind: "number", text: numeric[0] })
      i += numeric[0].length
      continue
    }
    identifier.lastIndex = i
    const word = identifier.exec(source)
    if (word !== null) {
      const next = source[i + word[0].length]
      if (stringPrefix.test(word[0]) && (next === "'" || next === '"')) {
        const end = stringEnd(source, i + word[0].length)
        tokens.push({ kind: "string", text: source.slice(i, end) })
        i = end
      } else {
        tokens.push({ kind: "name", text: word[0] })
        i += word[0].length
      }
      continue
    }
    const op = operators.find((candidate) => source.startsWith(candidate, i))
    if (op === undefined) throw new Untokenizable(`unexpected ${JSON.stringify(c)} at ${i}`)
    if ("([{".includes(op)) brackets++
    if (")]}".includes(op)) brackets = Math.max(0, brackets - 1)
    tokens.push({ kind: "op", text: op })
    i += op.length
  }
  if (tokens.length > 0) lines.push({ depth, tokens })
  return lines
}

/**
 * Whether Python would read `a` and `b` written with nothing between them as other tokens:
 * two words (`return x`, `1 if`), a number and a dot (`1 .real`), two operators that make a
 * longer one (`- =`), or a name that would become a string's prefix (`r "x"`).
 */
const needsSpace = (a: Token, b: Token): boolean => {
  if (wordChar.test(a.text.at(-1)!) && wordChar.test(b.text[0]!)) return true
  if (/[0-9.]$/.test(a.text) && b.text.startsWith(".")) return true
  if (a.text.endsWith(".") && /^[0-9]/.test(b.text)) return true
  if (a.kind === "name" && b.kind === "string") return true
  if (a.kind === "op" && b.kind === "op") {
    const joined = a.text + b.text
    for (let k = 1; k <= a.text.length; k++) {
      const from = a.text.length - k
      if (longOperators.some((op) => op.length > k && joined.startsWith(op, from))) return true
    }
  }
  return false
}

const render = (tokens: ReadonlyArray<Token>): string => {
  let out = ""
  for (let i = 0; i < tokens.length; i++) {
    if (i > 0 && needsSpace(tokens[i - 1]!, tokens[i]!)) out += " "
    out += tokens[i]!.text
  }
  return out
}

const opensBody = (line: LogicalLine): boolean => line.tokens.at(-1)?.text === ":"
const opensScope = (line: LogicalLine): boolean =>
  opensBody(line) && (line.tokens[0]!.text === "def" || line.tokens[0]!.text === "class" || (line.tokens[0]!.text === "async" && line.tokens[1]?.text === "def"))

/** A string statement Python keeps as a docstring: plain text (no `b` or `f` prefix). */
const isDocstring = (line: LogicalLine): boolean =>
  line.tokens.every((token) => token.kind === "string" && /^[rRuU]?['"]/.test(token.text))

const compoundKeywords = new Set(["if", "elif", "else", "for", "while", "try", "except", "finally", "with", "def", "class", "async", "match", "case"])
const isSimple = (line: LogicalLine): boolean => !opensBody(line) && line.tokens[0]!.text !== "@" && !compoundKeywords.has(line.tokens[0]!.text)

/**
 * The module's, classes' and functions' docstrings taken out; a body that was only one gets
 * `pass`.
 */
const withoutDocstrings = (lines: ReadonlyArray<LogicalLine>): Array<LogicalLine> => {
  const out: Array<LogicalLine> = []
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    const owner = i === 0 ? null : lines[i - 1]!
    const first = i === 0 || (opensScope(owner!) && line.depth > owner!.depth)
    if (first && isDocstring(line)) {
      const next = lines[i + 1]
      const bodyGoesOn = next !== undefined && (owner === null || next.depth > owner.depth)
      if (!bodyGoesOn) out.push({ depth: line.depth, tokens: [{ kind: "name", text: "pass" }] })
      continue
    }
    out.push(line)
  }
  return out
}

/**
 * The agent as user-data carries it: without comments and docstrings, each block one space
 * deeper than its parent, no blank lines, no space Python does not need between tokens, a
 * bracketed or `\`-continued statement on one line, and a block of simple statements on its
 * header's line (`if x:a;b`). Gzipped, that is about 650 bytes fewer than dropping comment
 * lines and docstrings and narrowing indentation alone. The `#!` line goes too: the agent runs
 * as `python3 file`. Source it cannot tokenize is returned as it is.
 */
export const compactAgent = (source: string): string => {
  let lines: Array<LogicalLine>
  try {
    lines = withoutDocstrings(logicalLines(source))
  } catch (error) {
    if (error instanceof Untokenizable) return source
    throw error
  }
  const out: Array<string> = []
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    let text = render(line.tokens)
    // A function's or class's body keeps lines of its own: gzip kept about 20 bytes more of it
    // on the header's line.
    if (opensBody(line) && !opensScope(line)) {
      let end = i + 1
      while (end < lines.length && lines[end]!.depth === line.depth + 1 && isSimple(lines[end]!)) end++
      if (end > i + 1 && (end === lines.length || lines[end]!.depth <= line.depth)) {
        text += lines.slice(i + 1, end).map((body) => render(body.tokens)).join(";")
        i = end - 1
      }
    }
    out.push(" ".repeat(line.depth) + text)
  }
  return out.join("\n")
}
