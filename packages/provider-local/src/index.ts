/**
 * `LocalProvider.layer()` for `SkyRepl.layer({ providers: [...] })`; `LocalApi` holds the
 * low-level sandbox operations for tools that start sandboxes of their own (emulators, tests).
 */
export * as LocalProvider from "./local-provider.ts"
export * as LocalApi from "./local-api.ts"
export { ForkServerMode, IsolationMode, type LocalProviderOptions } from "./options.ts"
export type { ForkAgent, ForkRequest, ForkServer } from "./fork-server.ts"
