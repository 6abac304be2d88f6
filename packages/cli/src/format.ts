/** Colours only for a terminal, and never when NO_COLOR is set (https://no-color.org). */
export const useColor = (stream: { readonly isTTY?: boolean }): boolean =>
  stream.isTTY === true && (process.env["NO_COLOR"] ?? "") === "" && process.env["TERM"] !== "dumb"

const paint = (code: number) => (text: string, on: boolean) => (on ? `\u001b[${code}m${text}\u001b[0m` : text)
export const dim = paint(2)
export const bold = paint(1)
export const red = paint(31)
export const green = paint(32)
export const yellow = paint(33)

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

const visible = (text: string) => text.replace(/\u001b\[[0-9;]*m/g, "")

/** A plain aligned table; `cells` may already hold colour codes. */
export const table = (headers: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>, color: boolean): string => {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => visible(r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + " ".repeat((widths[i] ?? 0) - visible(c).length)))
      .join("  ")
      .trimEnd()
  return [bold(line(headers), color), ...rows.map(line)].join("\n") + "\n"
}

export const toJson = (value: unknown): string => JSON.stringify(value, null, 2) + "\n"

export const truncate = (text: string, max: number): string =>
  text.length <= max ? text : text.slice(0, Math.max(0, max - 1)) + "…"
