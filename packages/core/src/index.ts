/**
 * @skyrepl/core: run commands on instances that are never left running.
 *
 * Effect API: `launch`, `attach`, `cancel`, `scanOrphans` with the `SkyRepl` service built by
 * `SkyRepl.layer(...)`. Promise API: `SkyRepl.make(...)`.
 *
 * @module @skyrepl/core
 */
export * from "./config.ts"
export * from "./domain/index.ts"
export * from "./duration.ts"
export * from "./errors.ts"
export { isIPv4Address, isIPv6Address, isIpAddress } from "./ip-address.ts"
export * from "./naming.ts"
export { describeCause } from "./cause-message.ts"
export { boxedPrimitiveProblem, boxedShown } from "./boxed.ts"
export { describeParseError } from "./parse-error.ts"
export { consoleLines } from "./console-lines.ts"
export * from "./provider.ts"
export * from "./store.ts"
export { agentArguments, type AgentLaunch, agentRunVariables, agentScriptPath } from "./agent-script.ts"
export { shippedFile } from "./package-file.ts"
export { AGENT_PROTOCOL_VERSION } from "./hub/protocol.ts"
export { type DeflateWrapper, inflateExact, ownBytes } from "./output-encoding.ts"
export {
  attach,
  cancel,
  createSnapshot,
  deleteSnapshot,
  getRun,
  launch,
  listAllocations,
  listInstances,
  listRuns,
  listSnapshots,
  scanOrphans
} from "./engine/api.ts"
export { checkSnapshotId, type SnapshotError } from "./engine/snapshots.ts"
export type { AttachOptions } from "./engine/attach.ts"
export type { CancelResult } from "./engine/cancel.ts"
export type { ClientRun, SkyReplClient } from "./engine/client.ts"
export type { LaunchOptions, LaunchProgress, RunHandle } from "./engine/launch.ts"
export { validateLaunchOptions } from "./engine/launch.ts"
export { defaultMinAge } from "./engine/orphans.ts"
/** A run record as the result its handle gives: a run not yet ended counts as failed. */
export { toResult as runResultOf } from "./engine/lifecycle.ts"
export type { Orphan, OrphanReason, OrphanReport, ScanOptions } from "./engine/orphans.ts"
export type { ControllerIdentity, RunResult, SkyReplService } from "./engine/service.ts"
export { type LazyProvider, SkyRepl, type SkyReplLayerOptions } from "./engine/skyrepl.ts"
export { createTestRepl, type ExecResult, type TestLaunchDefaults, type TestRepl } from "./fixtures/test-repl.ts"
