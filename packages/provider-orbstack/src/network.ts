import { isIPv4Address, type ProviderError } from "@skyrepl/core"
import { Duration, Effect, Option } from "effect"
import { lookup } from "node:dns/promises"
import type { LookupHost } from "./options.ts"
import type { Orbctl } from "./orbstack-api.ts"

/** Which step of the chain found the address. */
export type IpSource = "info" | "dns" | "run"

export interface DiscoveredIp {
  readonly ip: string
  readonly source: IpSource
}

/** The system resolver, IPv4 only; no answer (or no answer in time) is an empty list. */
export const systemLookup: LookupHost = (host) =>
  Effect.tryPromise(() => lookup(host, { family: 4, all: true })).pipe(
    Effect.map((addresses) => addresses.map((a) => a.address)),
    Effect.orElseSucceed((): ReadonlyArray<string> => [])
  )

/** `.local` names can wait on multicast DNS; an answer that slow is no answer. */
const lookupTimeout = Duration.seconds(2)

const firstIPv4 = (words: ReadonlyArray<string>): string | null => words.find((w) => isIPv4Address(w)) ?? null

/**
 * A machine's address, by the first step that knows it: `orbctl info` (OrbStack's own record),
 * then DNS for `{name}.orb.local` (OrbStack's resolver on the Mac), then `hostname -I` inside the
 * machine. `null`: none of them knows one, which is how DHCP exhaustion shows.
 */
export const discoverIp = (
  orbctl: Orbctl,
  name: string,
  lookupHost: LookupHost
): Effect.Effect<DiscoveredIp | null, ProviderError> =>
  Effect.gen(function* () {
    const info = yield* orbctl.info(name)
    const fromInfo = Option.flatMap(info, (i) => Option.fromNullable(firstIPv4(i.ip4.split(/\s+/))))
    if (Option.isSome(fromInfo)) return { ip: fromInfo.value, source: "info" as const }
    const fromDns = yield* lookupHost(`${name}.orb.local`).pipe(
      Effect.timeoutTo({ duration: lookupTimeout, onSuccess: firstIPv4, onTimeout: () => null })
    )
    if (fromDns !== null) return { ip: fromDns, source: "dns" as const }
    const inside = yield* orbctl.run(name, ["hostname", "-I"])
    const fromRun = inside.exitCode === 0 ? firstIPv4(inside.stdout.trim().split(/\s+/)) : null
    return fromRun === null ? null : { ip: fromRun, source: "run" as const }
  })

const loopbackHosts: ReadonlySet<string> = new Set(["127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0"])

/**
 * The agent URL as a machine must call it. The controller usually listens on loopback, and a
 * machine's own 127.0.0.1 is itself, not the Mac: OrbStack names the Mac `host.orb.internal`
 * inside machines and forwards that to the Mac's loopback. Other URLs (a tunnel, a LAN
 * address set with SKYREPL_CONTROL_PLANE_URL) are used as given.
 */
export const agentUrlFor = (agentUrl: string, hostAlias: string): string => {
  let url: URL
  try {
    url = new URL(agentUrl)
  } catch {
    return agentUrl
  }
  if (!loopbackHosts.has(url.hostname)) return agentUrl
  url.hostname = hostAlias
  // URL keeps a trailing slash for an empty path; the agent appends `/v1/...` itself.
  return url.pathname === "/" && !agentUrl.endsWith("/") ? url.toString().replace(/\/$/, "") : url.toString()
}
