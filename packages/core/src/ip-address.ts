/**
 * IP addresses as written, told apart by the WHATWG URL parser that both runtimes carry.
 * node:net's `isIP` would do, but importing node:net loads the stream modules with it: about
 * 6 ms of every CLI command on Bun (bench B2), for a check of one setting.
 */

/** Digits and dots alone: an IPv4 address, or nothing (never a host name to look up). */
export const isDottedDigits = (text: string): boolean => /^[\d.]+$/.test(text)

/**
 * An IPv4 address in its usual form: four decimal numbers 0–255 without leading zeros. The URL
 * parser reads looser forms too (`1.2.3`, `0x7f.1`, `01.2.3.4`) and writes them out in this one,
 * so an address it leaves as it was is one in this form.
 */
export const isIPv4Address = (text: string): boolean => {
  if (!isDottedDigits(text)) return false
  try {
    return new URL(`http://${text}/`).hostname === text
  } catch {
    return false
  }
}

/**
 * An IPv6 address (without a zone, `%eth0`, which URLs cannot carry): whatever the URL parser
 * takes between brackets.
 */
export const isIPv6Address = (text: string): boolean => {
  if (!text.includes(":") || /[[\]/?#@]/.test(text)) return false
  try {
    new URL(`http://[${text}]/`)
    return true
  } catch {
    return false
  }
}

export const isIpAddress = (text: string): boolean => isIPv4Address(text) || isIPv6Address(text)
