import { Duration, Effect, Either, Option, Schema } from "effect"
import type { Instance } from "../domain/instance.ts"
import { boxedPrimitiveProblem } from "../boxed.ts"
import { InvalidScanOptions, type ScanError } from "../errors.ts"
import { decodeDurationOption, type DurationOption } from "../duration.ts"
import { instanceNameTime, parseInstanceName } from "../naming.ts"
import { describeParseError } from "../parse-error.ts"
import { checkProviderConfiguration, type ProviderInstance } from "../provider.ts"
import { terminateInstance, withProviderRetry, withTerminationRetry } from "./lifecycle.ts"
import type { SkyReplService } from "./service.ts"

/** What `scanOrphans` takes. A key that is none of these is refused (`InvalidScanOptions`), not ignored. */
export interface ScanOptions {
  /** Provider ids to scan; every configured provider when absent. */
  readonly providers?: ReadonlyArray<string>
  /** Terminate what is found (default false: a dry run that only lists). */
  readonly reap?: boolean
  /** Leave resources younger than this alone (default 10 minutes): a launch may be in flight. */
  readonly minAge?: DurationOption
  /** Names never reaped. */
  readonly keep?: ReadonlyArray<string>
  /** Only resources whose name carries this store's control id (default false: all of them). */
  readonly ownOnly?: boolean
}

export type OrphanReason =
  /** Named for this control plane, but the store has no record (e.g. the database was deleted). */
  | "untracked"
  /** Named for another control plane: no store here tracks it. */
  | "foreign"
  /** The store says terminated, yet the provider still has it. */
  | "terminated-in-store"
  /** Tracked, but its owner stopped renewing the lease. */
  | "owner-gone"

export interface Orphan {
  readonly provider: string
  readonly name: string
  readonly providerRef: string
  readonly region: string | null
  readonly controlId: string | null
  readonly reason: OrphanReason
  readonly ageMs: number | null
  readonly action: "listed" | "reaped" | "kept" | "too-young" | "reap-failed"
  readonly error: string | null
}

export interface OrphanReport {
  readonly scannedAt: number
  readonly providers: ReadonlyArray<string>
  /**
   * Providers left out (only when none were named): because they cannot be used here, or
   * (`failed`) because listing them failed even after retries, so the sweep did not cover them.
   */
  readonly skipped: ReadonlyArray<{ readonly provider: string; readonly message: string; readonly failed?: true }>
  /** Resources seen at the providers, orphans or not. */
  readonly resources: number
  readonly orphans: ReadonlyArray<Orphan>
}

export const defaultMinAge = Duration.minutes(10)

/** The options but `minAge` (decoded on its own, as `decodeDurationOption` takes it). */
const ValidScanOptions = Schema.Struct({
  providers: Schema.optional(Schema.Array(Schema.String)),
  reap: Schema.optional(Schema.Boolean),
  keep: Schema.optional(Schema.Array(Schema.String)),
  ownOnly: Schema.optional(Schema.Boolean)
}).annotations({ message: (issue) => `scan options must be an object, not ${String(issue.actual)}` })

/** Every option `scanOrphans` reads; any other key is refused rather than dropped. */
const SCAN_OPTIONS: ReadonlyArray<keyof ScanOptions> = ["providers", "reap", "minAge", "keep", "ownOnly"]

const classify = (
  engine: SkyReplService,
  resource: ProviderInstance,
  record: Option.Option<Instance>,
  now: number
): OrphanReason | null => {
  const controlId = Either.match(parseInstanceName(resource.name), { onLeft: () => null, onRight: (p) => p.controlId })
  if (Option.isNone(record)) return controlId === engine.store.controlId ? "untracked" : "foreign"
  const instance = record.value
  if (instance.state === "terminated") return "terminated-in-store"
  if (instance.leaseExpiresAt === null || instance.leaseExpiresAt < now) return "owner-gone"
  return null
}

/**
 * The sweep (cleanup layer 4): compares what the providers hold with what the store knows.
 * It needs nothing from the store to find resources, so it works after the store is lost.
 */
export const scanWith = (engine: SkyReplService, given: ScanOptions = {}): Effect.Effect<OrphanReport, ScanError> =>
  Effect.gen(function* () {
    // Checked before any provider is asked: with `reap`, a misread option terminates things.
    const boxed = boxedPrimitiveProblem(given, "scan options")
    if (boxed !== null) return yield* new InvalidScanOptions({ message: boxed })
    const decoded = Schema.decodeUnknownEither(ValidScanOptions)(given)
    if (Either.isLeft(decoded)) return yield* new InvalidScanOptions({ message: describeParseError(decoded.left) })
    // A misspelt key was dropped, and with `reap` that is the dangerous way round: `ownonly`
    // reaped other homes' instances too, `kep` what was meant to be kept.
    const unknown = Object.keys(given).find((key) => !SCAN_OPTIONS.some((known) => known === key))
    if (unknown !== undefined) {
      return yield* new InvalidScanOptions({ message: `${JSON.stringify(unknown)} is not a scan option (${SCAN_OPTIONS.join(", ")})` })
    }
    // 0 is a margin of none, which a caller may want (`repl orphans --min-age 0`).
    const minAge = decodeDurationOption(given.minAge ?? defaultMinAge, { zero: true })
    if (Either.isLeft(minAge)) return yield* new InvalidScanOptions({ message: `minAge: ${minAge.left}` })
    const options = decoded.right
    // A provider named twice would be listed, and reaped, twice.
    const ids = options.providers === undefined ? engine.providerIds : [...new Set(options.providers)]
    const providers = yield* Effect.forEach(ids, (id) => engine.provider(id))
    const minAgeMs = Duration.toMillis(minAge.right)
    const keep = new Set(options.keep ?? [])
    const now = Date.now()
    const known = new Map((yield* engine.store.listInstances()).map((i) => [i.name, i] as const))
    let resources = 0
    const orphans: Array<Orphan> = []

    const skipped: Array<{ provider: string; message: string; failed?: true }> = []
    const scanned: Array<string> = []
    for (const provider of providers) {
      // A provider whose own settings are malformed (a bad SKYREPL_AWS_* value) cannot list:
      // sweeping everything skips it and says why, so the other providers are still swept;
      // a provider the caller named fails loudly, as a usage error.
      if (provider.configurationProblem !== undefined) {
        if (options.providers !== undefined) yield* checkProviderConfiguration(provider)
        skipped.push({ provider: provider.id, message: provider.configurationProblem })
        continue
      }
      const regions = [...new Set([...known.values()].flatMap((i) => (i.provider === provider.id && i.region !== null ? [i.region] : [])))]
      const listed = yield* withProviderRetry(provider.list({ regions })).pipe(
        // Sweeping "everything" on a Linux box must not fail because OrbStack is macOS-only;
        // nor must one provider that cannot be reached now (an offline laptop and AWS) keep the
        // others from being swept: it is skipped as failed, which the report says. A provider
        // the caller named explicitly still fails loudly.
        Effect.map(Option.some),
        Effect.catchIf(
          (error) => options.providers === undefined && (error.reason === "unavailable" || error.retryable),
          (error) =>
            Effect.sync(() => skipped.push({ provider: provider.id, message: error.message, ...(error.reason === "unavailable" ? {} : { failed: true as const }) })).pipe(
              Effect.as(Option.none())
            )
        )
      )
      if (Option.isNone(listed)) continue
      scanned.push(provider.id)
      const found = listed.value
      resources += found.length
      const candidates = found.flatMap((resource) => {
        const record = Option.fromNullable(known.get(resource.name))
        const reason = classify(engine, resource, record, now)
        const controlId = Either.match(parseInstanceName(resource.name), { onLeft: () => null, onRight: (p) => p.controlId })
        if (reason === null) return []
        if (options.ownOnly === true && controlId !== engine.store.controlId) return []
        const created = resource.createdAt ?? instanceNameTime(resource.name) ?? null
        return [{ resource, record, reason, controlId, ageMs: created === null ? null : Math.max(0, now - created) }]
      })
      const handled = yield* Effect.forEach(
        candidates,
        ({ resource, record, reason, controlId, ageMs }) =>
          Effect.gen(function* () {
            const base = {
              provider: provider.id,
              name: resource.name,
              providerRef: resource.providerRef,
              region: resource.region,
              controlId,
              reason,
              ageMs
            }
            if (options.reap !== true) return { ...base, action: "listed", error: null } satisfies Orphan
            if (keep.has(resource.name)) return { ...base, action: "kept", error: null } satisfies Orphan
            if (ageMs === null || ageMs < minAgeMs) return { ...base, action: "too-young", error: null } satisfies Orphan
            const reaped = Option.isSome(record) && record.value.state !== "terminated"
              ? engine.register.pipe(
                  Effect.zipRight(engine.store.claimInstance(record.value.id, engine.controller.id, now + Duration.toMillis(engine.settings.leaseTtl))),
                  Effect.flatMap((claimed) => terminateInstance(engine, claimed, "reaped by the orphan sweep")))
              : withTerminationRetry(
                  provider.terminate({ name: resource.name, providerRef: resource.providerRef, region: resource.region })
                )
            return yield* reaped.pipe(
              Effect.as({ ...base, action: "reaped", error: null } satisfies Orphan),
              Effect.catchAll((error) => Effect.succeed({ ...base, action: "reap-failed", error: error.message } satisfies Orphan))
            )
          }),
        { concurrency: 8 }
      )
      orphans.push(...handled)
    }
    return { scannedAt: now, providers: scanned, skipped, resources, orphans }
  })

