import { Instance } from "../domain/instance.ts"
import { Manifest } from "../domain/manifest.ts"
import { Run } from "../domain/run.ts"
import { formatInstanceName, newId } from "../naming.ts"

/** A launch's three records, as `StoreService.createLaunch` takes them. */
export interface LaunchRecords {
  readonly manifest: Manifest
  readonly instance: Instance
  readonly run: Run
}

export interface LaunchRecordOptions {
  /** The manifest's controller, and the owner unless `ownerControllerId` says otherwise. */
  readonly controllerId?: string
  readonly ownerControllerId?: string | null
  readonly provider?: string
  readonly spec?: string
  readonly providerRef?: string | null
  readonly command?: string
  readonly env?: Readonly<Record<string, string>>
  /** Null: no lease. Default: 30 s after `createdAt`. */
  readonly leaseExpiresAt?: number | null
  readonly createdAt: number
}

/**
 * A new launch's records (manifest `open`, instance `requested`, run `pending`) for the store
 * with control id `controlId`, as the engine writes them. Test fixtures and the benchmarks'
 * seeding build them here rather than each spelling the records out. No test framework is
 * imported, so benchmark processes can use it.
 */
export const launchRecords = (controlId: string, options: LaunchRecordOptions): LaunchRecords => {
  const { createdAt } = options
  const controllerId = options.controllerId ?? "controller-a"
  const manifestId = newId(createdAt)
  const instanceId = newId(createdAt)
  const provider = options.provider ?? "local"
  const owner = options.ownerControllerId === undefined ? controllerId : options.ownerControllerId
  return {
    manifest: new Manifest({ id: manifestId, controllerId, state: "open", createdAt }),
    instance: new Instance({
      id: instanceId,
      name: formatInstanceName({ controlId, manifestId, instanceId }),
      manifestId,
      provider,
      spec: options.spec ?? `${provider}:small`,
      region: null,
      providerRef: options.providerRef ?? null,
      state: "requested",
      ownerControllerId: owner,
      leaseExpiresAt: options.leaseExpiresAt === undefined ? createdAt + 30_000 : options.leaseExpiresAt,
      agentToken: `token-${instanceId}`,
      error: null,
      createdAt,
      updatedAt: createdAt
    }),
    run: new Run({
      id: newId(createdAt),
      manifestId,
      instanceId,
      provider,
      command: options.command ?? "echo hello",
      env: options.env ?? { GREETING: "hello" },
      workdir: null,
      maxDurationMs: null,
      state: "pending",
      exitCode: null,
      signal: null,
      error: null,
      ownerControllerId: owner,
      createdAt,
      startedAt: null,
      endedAt: null
    })
  }
}
