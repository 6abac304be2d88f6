/**
 * `OrbStackProvider.layer()` for `SkyRepl.layer({ providers: [...] })`: Linux machines on macOS
 * through OrbStack's `orbctl`. `OrbStackApi` holds the `orbctl` calls themselves, for tools and
 * tests that talk to OrbStack (or its emulator) directly.
 */
export * as OrbStackProvider from "./orbstack-provider.ts"
export * as OrbStackApi from "./orbstack-api.ts"
export { agentUrlFor, discoverIp, type DiscoveredIp, type IpSource } from "./network.ts"
export { BOOTSTRAP_LOG, bootstrapScript, type BootstrapInput, shutdownCommand } from "./bootstrap.ts"
export { SNAPSHOT_PREFIX } from "./snapshots.ts"
export { parseSpec, ubuntuVersions, validSpecForms, type Arch, type OrbStackSpec, type UbuntuVersion } from "./spec.ts"
export { resetProcedure } from "./failures.ts"
export type { LookupHost, OrbStackProviderOptions } from "./options.ts"
