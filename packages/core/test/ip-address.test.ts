import { isIP, isIPv4 } from "node:net"
import { describe, expect, it } from "vitest"
import { isIpAddress, isIPv4Address, isIPv6Address } from "../src/ip-address.ts"

// node:net is the reference the module replaces (it is not imported by the library, for its
// start-up cost); on every case but a zone, the answers must be the same.
const cases = [
  "127.0.0.1", "0.0.0.0", "255.255.255.255", "10.0.0.255",
  "256.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.04", "0x7f.0.0.1", "1.2.3.4.", ".1.2.3", "1..2.3",
  "::1", "::", "fe80::1", "2001:db8::ff00:42:8329", "::ffff:1.2.3.4", "1:2:3:4:5:6:7:8", "64:ff9b::192.0.2.33",
  "1::2::3", "::g", "1:2:3:4:5:6:7:8:9", "12345::", ":::", "::1]/x", "[::1]", "::1/128", "a:b",
  "localhost", "example.com", "", " 1.2.3.4", "1.2.3.4 ", "::1 ", "1.2.3.4:80", "user@1.2.3.4", "1.2.3.4/x", "1.2.3.4?"
]

describe("IP addresses", () => {
  it.each(cases)("%j: the same answer as node:net", (text) => {
    expect(isIpAddress(text)).toBe(isIP(text) !== 0)
    expect(isIPv4Address(text)).toBe(isIPv4(text))
    expect(isIPv6Address(text)).toBe(isIP(text) === 6)
  })

  it("refuses an IPv6 address with a zone, which node:net takes (a URL cannot carry one)", () => {
    expect(isIP("fe80::1%eth0")).toBe(6)
    expect(isIpAddress("fe80::1%eth0")).toBe(false)
  })
})
