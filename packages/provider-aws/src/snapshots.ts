import { type InstanceRef, ProviderError, type ProviderSnapshots, type Snapshot } from "@skyrepl/core"
import { Effect } from "effect"
import { type AwsApi, type Image, tagValue, type Tag } from "./aws-api.ts"
import { providerError, toProviderError } from "./errors.ts"
import { isRegion, notARegion } from "./options.ts"
import { PROVIDER_ID } from "./spec.ts"

export const MANAGED_TAG = "skyrepl:managed"
export const SOURCE_TAG = "skyrepl:source"

const amiId = /^ami-[0-9a-f]{8,17}$/

/** What is wrong with `id` as an AMI id, or null. */
const idProblem = (id: string): string | null =>
  amiId.test(id) ? null : `"${id}" is not an AMI id (ami- and 8 to 17 hex digits; repl snapshot list shows them)`

/**
 * What is wrong with `name` as a snapshot name, or null. Any other name is made to fit
 * (`imageName`); a blank one would become "---", which names nothing.
 */
const nameProblem = (name: string): string | null =>
  name.trim() === "" ? "a snapshot name cannot be blank (leave --name out for the default: the instance's name and a time)" : null

/** AMI names allow letters, digits, spaces and `()[]./-'@_`, 3 to 128 characters. */
export const imageName = (name: string): string => {
  const cleaned = name.replace(/[^A-Za-z0-9 ()[\]./'@_-]/g, "-").slice(0, 128)
  return cleaned.length >= 3 ? cleaned : `${cleaned}---`.slice(0, 3)
}

const stateOf = (image: Image): Snapshot["state"] => {
  switch (image.State) {
    case "available":
      return "available"
    case "pending":
    case undefined:
      return "pending"
    default:
      return "failed"
  }
}

export const toSnapshot = (image: Image, region: string): Snapshot => {
  const created = image.CreationDate === undefined ? Number.NaN : Date.parse(image.CreationDate)
  return {
    id: image.ImageId,
    name: image.Name ?? image.ImageId,
    provider: PROVIDER_ID,
    region,
    source: tagValue(image.Tags, SOURCE_TAG) ?? null,
    state: stateOf(image),
    createdAt: Number.isNaN(created) ? null : created
  }
}

export interface SnapshotDeps {
  readonly api: AwsApi
  /** Finds the EC2 instance behind a ref (its id and region). */
  readonly locate: (ref: InstanceRef, operation: string) => Effect.Effect<{ readonly instanceId: string; readonly region: string } | null, ProviderError>
  /** Regions to list: the default, the configured ones and those this process used. */
  readonly regions: (operation: string) => Effect.Effect<ReadonlyArray<string>, ProviderError>
  readonly defaultRegion: (operation: string) => Effect.Effect<string, ProviderError>
  readonly managedTags: ReadonlyArray<Tag>
}

/**
 * Snapshots are AMIs created from the instance (`CreateImage`, without a reboot so the run on
 * it goes on), tagged as SkyREPL's; deleting one deregisters the AMI and deletes its EBS
 * snapshots, which would otherwise keep costing money.
 */
export const makeSnapshots = (deps: SnapshotDeps): ProviderSnapshots => {
  const { api } = deps

  const create = (ref: InstanceRef, name: string): Effect.Effect<Snapshot, ProviderError> =>
    Effect.gen(function* () {
      const problem = nameProblem(name)
      if (problem !== null) return yield* providerError("CreateImage", "invalid-request", problem)
      const found = yield* deps.locate(ref, "CreateImage")
      if (found === null) return yield* providerError("CreateImage", "not-found", `instance ${ref.name} does not exist (any more)`)
      const tags = [...deps.managedTags, { key: SOURCE_TAG, value: ref.name }, { key: "Name", value: imageName(name) }]
      const imageId = yield* api
        .createImage(found.region, found.instanceId, imageName(name), `SkyREPL snapshot of ${ref.name}`, tags)
        .pipe(Effect.mapError((e) => toProviderError(e)))
      const described = yield* api.describeImages(found.region, { imageIds: [imageId] }).pipe(
        Effect.map((images) => images[0]),
        // The image exists (CreateImage said so) even if describing it right away fails.
        Effect.orElseSucceed(() => undefined)
      )
      return described === undefined
        ? { id: imageId, name: imageName(name), provider: PROVIDER_ID, region: found.region, source: ref.name, state: "pending", createdAt: Date.now() }
        : toSnapshot(described, found.region)
    })

  const list = (): Effect.Effect<ReadonlyArray<Snapshot>, ProviderError> =>
    Effect.gen(function* () {
      const regions = yield* deps.regions("DescribeImages")
      const perRegion = yield* Effect.forEach(
        regions,
        (region) =>
          api
            .describeImages(region, { owners: ["self"], filters: [{ name: `tag:${MANAGED_TAG}`, values: ["true"] }] })
            .pipe(
              Effect.map((images) => images.map((image) => toSnapshot(image, region))),
              Effect.mapError((e) => toProviderError(e))
            ),
        { concurrency: 4 }
      )
      return perRegion.flat().sort((a, b) => (b.createdAt ?? 0) - (a.createdAt ?? 0))
    })

  const remove = (id: string, region: string | null): Effect.Effect<void, ProviderError> =>
    Effect.gen(function* () {
      // Checked before anything is asked of AWS: a misspelt region is the caller's mistake,
      // and AWS would otherwise be asked first for credentials, then about a region with no
      // such image (a delete that finds nothing succeeds).
      if (region !== null && !isRegion(region)) {
        return yield* providerError("DeregisterImage", "invalid-request", notARegion(region))
      }
      // Not an image id at all: AWS answers InvalidAMIID.Malformed, which is no "already gone".
      // Asked again for a caller that goes to the provider directly, not through the engine.
      const problem = idProblem(id)
      if (problem !== null) return yield* providerError("DeregisterImage", "invalid-request", problem)
      const where = region ?? (yield* deps.defaultRegion("DeregisterImage"))
      const images = yield* api.describeImages(where, { imageIds: [id], owners: ["self"] }).pipe(
        Effect.catchIf(
          (e) => e.code === "InvalidAMIID.NotFound" || e.code === "InvalidAMIID.Unavailable",
          () => Effect.succeed([])
        ),
        Effect.mapError((e) => toProviderError(e))
      )
      const image = images[0]
      if (image === undefined) return
      if (tagValue(image.Tags, MANAGED_TAG) !== "true") {
        return yield* providerError("DeregisterImage", "invalid-request", `${id} in ${where} is not a SkyREPL snapshot; it is left alone`)
      }
      const snapshotIds = (image.BlockDeviceMappings ?? []).flatMap((m) => (m.Ebs?.SnapshotId === undefined ? [] : [m.Ebs.SnapshotId]))
      yield* api.deregisterImage(where, id).pipe(
        Effect.catchIf((e) => e.code.startsWith("InvalidAMIID."), () => Effect.void),
        Effect.mapError((e) => toProviderError(e))
      )
      // The snapshots can only go once the image no longer uses them. Once it is deregistered,
      // nothing leads to them again (a second delete finds no image): a failure here must name
      // what is left, or it is billed unseen.
      for (const [index, snapshotId] of snapshotIds.entries()) {
        yield* api.deleteSnapshot(where, snapshotId).pipe(
          Effect.catchIf((e) => e.code === "InvalidSnapshot.NotFound", () => Effect.void),
          Effect.mapError((e) => {
            const error = toProviderError(e)
            const left = snapshotIds.slice(index)
            // Marked retried whatever the reason: a repeated delete finds no image and reports
            // success, hiding this message.
            return new ProviderError({
              provider: PROVIDER_ID,
              operation: error.operation,
              reason: error.reason,
              message:
                `${error.message} ${id} is deregistered, but its EBS snapshot${left.length === 1 ? "" : "s"} ${left.join(", ")} ` +
                `could not be deleted, and repl snapshot delete cannot find ${left.length === 1 ? "it" : "them"} again; delete ${left.length === 1 ? "it" : "them"} with: ` +
                left.map((s) => `aws ec2 delete-snapshot --region ${where} --snapshot-id ${s}`).join("; ") +
                ".",
              cause: e,
              retried: true
            })
          })
        )
      }
    })

  return { nameProblem, idProblem, create, list, delete: remove }
}
