import { formatDuration, ProviderError, type ProviderErrorReason } from "@skyrepl/core"
import type { Duration } from "effect"
import { PROVIDER_ID } from "./spec.ts"

/**
 * The failures OrbStack users meet, each with its own message, so that what to do next is in
 * the message and not in a search engine.
 */

export const providerError = (operation: string, reason: ProviderErrorReason, message: string, cause?: unknown) =>
  new ProviderError({ provider: PROVIDER_ID, operation, reason, message, ...(cause === undefined ? {} : { cause }) })

/** Where docs/providers/orbstack.md explains how to give OrbStack its addresses back. */
export const resetProcedure = "docs/providers/orbstack.md#ip-address-exhaustion"

export const orbctlMissing = (operation: string, command: string, cause?: unknown) =>
  providerError(
    operation,
    "unavailable",
    `orbctl not found${command === "orbctl" ? "" : ` (${command})`}: OrbStack is macOS-only; install it and launch it once`,
    cause
  )

/** The error `orbctlMissing` makes: OrbStack is not installed where this process can see it. */
export const isOrbctlMissing = (error: ProviderError): boolean =>
  error.reason === "unavailable" && error.message.startsWith("orbctl not found")

/**
 * OrbStack hands machines addresses from a DHCP pool; many create/delete cycles in a row can
 * leave it with none to give ("missing IP address"). Retrying does not help, and more machines
 * make it worse, so it is permanent until the user resets the network.
 */
export const ipExhausted = (operation: string, name: string, detail: string) =>
  providerError(
    operation,
    "quota",
    `OrbStack could not give ${name} an IP address (DHCP/IP exhaustion, usually after many rapid create/delete cycles): ${detail}. Reset OrbStack's network as described in ${resetProcedure}`
  )

export const vmNotFound = (operation: string, name: string) =>
  providerError(operation, "not-found", `VM not found: OrbStack has no machine named ${name} (deleted outside SkyREPL?)`)

export const bootTimedOut = (name: string, timeout: Duration.Duration, lastState: string) =>
  providerError(
    "spawn",
    "unavailable",
    `boot time-out: ${name} did not reach "running" within ${formatDuration(timeout)} (last state: ${lastState}); OrbStack may be short of memory, or set SKYREPL_ORBSTACK_BOOT_TIMEOUT higher`
  )
