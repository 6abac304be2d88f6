/** The longest a console line is kept in an error message; a traceback's last line fits. */
const CONSOLE_LINE_CHARS = 240

/**
 * The last `count` non-empty lines of a console's text, each made one printable line (control
 * characters become spaces) and cut to a length an error message can carry. For
 * `ProviderService.consoleTail`: providers read their console their own way, and shape what
 * they read alike. `cutAtStart`: the text starts inside a line (the end of a longer log was
 * read), so its first line is dropped unless it is all there is.
 */
export const consoleLines = (text: string, count: number, cutAtStart = false): ReadonlyArray<string> => {
  const all = text.split(/\r?\n/)
  const whole = cutAtStart && all.length > 1 ? all.slice(1) : all
  return whole
    .map((line) => line.replace(/[\u0000-\u001f\u007f]/g, " ").trim())
    .filter((line) => line !== "")
    .slice(-count)
    .map((line) => (line.length > CONSOLE_LINE_CHARS ? `${line.slice(0, CONSOLE_LINE_CHARS)}…` : line))
}
