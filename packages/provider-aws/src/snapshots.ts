import { type InstanceRef, ProviderError, type ProviderSnapshots, type Snapshot } from "@skyrepl/core"
import { Duration, Effect, Schedule } from "effect"
import { randomUUID } from "node:crypto"
import { type AwsApi, type EbsSnapshot, type Image, tagValue, type Tag } from "./aws-api.ts"
import { type AwsError, outcomeUnknown, providerError, toProviderError } from "./errors.ts"
import { isRegion, notARegion } from "./options.ts"
import { PROVIDER_ID } from "./spec.ts"

export const MANAGED_TAG = "skyrepl:managed"
export const SOURCE_TAG = "skyrepl:source"
/**
 * Names the one CreateImage that made an image (and its EBS snapshots): the image of a
 * CreateImage whose answer was lost is found by it. The key pair's creation uses the same key.
 */
export const CREATION_TAG = "skyrepl:creation"
/**
 * Written on an image's EBS snapshots before the image is deregistered: once it is, this tag is
 * all that leads from the image's id to what is left of it.
 */
export const IMAGE_TAG = "skyrepl:image"

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

/** A message that ends a sentence, so another can follow it. */
const sentence = (message: string): string => (/[.!?]$/.test(message) ? message : `${message}.`)

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

/**
 * The EBS snapshots an image left when its delete did not finish, as that image's row: its id
 * is what `delete` takes to finish the job. Their tags are the image's own (CreateImage gave
 * both the same), so the row keeps its name and source.
 */
const leftoverOf = (imageId: string, left: ReadonlyArray<EbsSnapshot>, region: string): Snapshot => {
  const started = left.flatMap((s) => (s.StartTime === undefined ? [] : [s.StartTime.getTime()]))
  return {
    id: imageId,
    name: left.map((s) => tagValue(s.Tags, "Name")).find((n) => n !== undefined) ?? imageId,
    provider: PROVIDER_ID,
    region,
    source: left.map((s) => tagValue(s.Tags, SOURCE_TAG)).find((n) => n !== undefined) ?? null,
    state: "deleting",
    createdAt: started.length === 0 ? null : Math.min(...started)
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
  /** How long EC2 may take to show an image it made (DescribeImages is eventually consistent). */
  readonly visibilityTimeout: Duration.Duration
}

/**
 * Snapshots are AMIs created from the instance (`CreateImage`, without a reboot so the run on
 * it goes on), tagged as SkyREPL's; deleting one deregisters the AMI and deletes its EBS
 * snapshots, which would otherwise keep costing money.
 */
export const makeSnapshots = (deps: SnapshotDeps): ProviderSnapshots => {
  const { api } = deps

  /**
   * Asked again until the image shows or `visibilityTimeout` has passed: EC2 may show an image
   * it just made only a little later. The wait grows to 5 s between looks, so a long time-out
   * does not turn into many calls.
   */
  const visibilitySchedule = Schedule.exponential(Duration.millis(250), 2).pipe(
    Schedule.union(Schedule.spaced(Duration.seconds(5))),
    Schedule.upTo(deps.visibilityTimeout)
  )

  /**
   * After a CreateImage whose answer was lost (a time-out, a reset connection, a 5xx, a 200 that
   * could not be read), the image it may have made, found by its creation tag. When there is
   * none, or it cannot be looked for, the failure says so after what CreateImage's call said.
   */
  const lostCreation = (region: string, creation: string, lost: AwsError): Effect.Effect<Image, ProviderError> => {
    const said = toProviderError(lost)
    const failed = (reason: ProviderError["reason"], message: string, retried: boolean | undefined) =>
      new ProviderError({
        provider: PROVIDER_ID,
        operation: "CreateImage",
        reason,
        message: `${sentence(said.message)} EC2 may have made the image before its answer was lost, ${message}`,
        cause: lost,
        ...(retried === true ? { retried: true } : {})
      })
    return api.describeImages(region, { owners: ["self"], filters: [{ name: `tag:${CREATION_TAG}`, values: [creation] }] }).pipe(
      // Passed through, so the repeat ends with the last answer rather than the schedule's count.
      Effect.repeat({ schedule: Schedule.passthrough<unknown, ReadonlyArray<Image>, never>(visibilitySchedule), until: (images) => images.length > 0 }),
      Effect.mapError((e) => {
        const lookup = toProviderError(e)
        return failed(lookup.reason, `and looking for it failed too (${lookup.message}): repl snapshot list shows it if it exists.`, lookup.retried)
      }),
      Effect.flatMap((images) => {
        const image = images[0]
        if (image !== undefined) return Effect.succeed(image)
        return Effect.fail(
          failed(
            said.reason,
            `but none of this snapshot showed in ${region} within ${Duration.format(deps.visibilityTimeout)}: it was not made; ` +
              `try again (repl snapshot list shows one that appears later).`,
            said.retried
          )
        )
      })
    )
  }

  const create = (ref: InstanceRef, name: string): Effect.Effect<Snapshot, ProviderError> =>
    Effect.gen(function* () {
      const problem = nameProblem(name)
      if (problem !== null) return yield* providerError("CreateImage", "invalid-request", problem)
      const found = yield* deps.locate(ref, "CreateImage")
      if (found === null) return yield* providerError("CreateImage", "not-found", `instance ${ref.name} does not exist (any more)`)
      const creation = randomUUID()
      const tags = [
        ...deps.managedTags,
        { key: SOURCE_TAG, value: ref.name },
        { key: "Name", value: imageName(name) },
        { key: CREATION_TAG, value: creation }
      ]
      const made = yield* api.createImage(found.region, found.instanceId, imageName(name), `SkyREPL snapshot of ${ref.name}`, tags).pipe(
        Effect.map((imageId) => ({ imageId, image: null })),
        // Only an answer lost on its way leaves open whether the image was made; CreateImage has
        // no client token to make a second call safe, so the image is looked for instead.
        Effect.catchIf(outcomeUnknown, (lost) => Effect.map(lostCreation(found.region, creation, lost), (image) => ({ imageId: image.ImageId, image }))),
        Effect.mapError((e) => (e._tag === "AwsError" ? toProviderError(e) : e))
      )
      if (made.image !== null) return toSnapshot(made.image, found.region)
      const imageId = made.imageId
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
          Effect.all(
            [
              api.describeImages(region, { owners: ["self"], filters: [{ name: `tag:${MANAGED_TAG}`, values: ["true"] }] }),
              api.describeSnapshots(region, [
                { name: `tag:${MANAGED_TAG}`, values: ["true"] },
                { name: "tag-key", values: [IMAGE_TAG] }
              ])
            ],
            { concurrency: 2 }
          ).pipe(
            Effect.map(([images, snapshots]) => {
              // An image still listed is one whose delete is under way or failed before its
              // deregistration: its own row says it is there.
              const listed = new Set(images.map((image) => image.ImageId))
              const left = new Map<string, Array<EbsSnapshot>>()
              for (const snapshot of snapshots) {
                const imageId = tagValue(snapshot.Tags, IMAGE_TAG)
                if (imageId === undefined || listed.has(imageId)) continue
                left.set(imageId, [...(left.get(imageId) ?? []), snapshot])
              }
              return [
                ...images.map((image) => toSnapshot(image, region)),
                ...[...left].map(([imageId, snapshots]) => leftoverOf(imageId, snapshots, region))
              ]
            }),
            Effect.mapError((e) => toProviderError(e))
          ),
        { concurrency: 4 }
      )
      return perRegion.flat().sort((a, b) => (b.createdAt ?? 0) - (a.createdAt ?? 0))
    })

  /**
   * Deletes what an image left, one snapshot after another. A failure names what is still
   * there: the image is gone from every listing but `snapshot list`'s `deleting` row, and its
   * snapshots are billed until a delete of the image's id finishes the job.
   */
  const deleteEbsSnapshots = (region: string, imageId: string, snapshotIds: ReadonlyArray<string>): Effect.Effect<void, ProviderError> =>
    Effect.forEach(
      snapshotIds,
      (snapshotId, index) =>
        api.deleteSnapshot(region, snapshotId).pipe(
          // EC2 goes on saying an image just deregistered uses its snapshots for a moment (it is
          // eventually consistent), so that is asked again, for as long as an image may take to
          // show. What is still in use then is in use for real (another image registered from
          // the snapshot): the failure names it, and it stays not retryable.
          Effect.retry({ schedule: visibilitySchedule, while: (e) => e.code === "InvalidSnapshot.InUse" }),
          Effect.catchIf((e) => e.code === "InvalidSnapshot.NotFound", () => Effect.void),
          Effect.mapError((e) => {
            const error = toProviderError(e)
            const left = snapshotIds.slice(index)
            const them = left.length === 1 ? "it" : "them"
            return new ProviderError({
              provider: PROVIDER_ID,
              operation: error.operation,
              reason: error.reason,
              message:
                `${sentence(error.message)} ${imageId} is deregistered, but its EBS snapshot${left.length === 1 ? "" : "s"} ${left.join(", ")} ` +
                `could not be deleted; repl snapshot delete ${imageId} --provider aws --region ${region} deletes ${them} once the cause is fixed.`,
              cause: e,
              ...(error.retried === true ? { retried: true } : {})
            })
          })
        ),
      { discard: true }
    )

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
      // No image: never one, or a delete that deregistered it and did not finish, whose EBS
      // snapshots carry its id.
      if (image === undefined) {
        const left = yield* api
          .describeSnapshots(where, [
            { name: `tag:${IMAGE_TAG}`, values: [id] },
            { name: `tag:${MANAGED_TAG}`, values: ["true"] }
          ])
          .pipe(Effect.mapError((e) => toProviderError(e)))
        return yield* deleteEbsSnapshots(where, id, left.map((s) => s.SnapshotId))
      }
      if (tagValue(image.Tags, MANAGED_TAG) !== "true") {
        return yield* providerError("DeregisterImage", "invalid-request", `${id} in ${where} is not a SkyREPL snapshot; it is left alone`)
      }
      const snapshotIds = (image.BlockDeviceMappings ?? []).flatMap((m) => (m.Ebs?.SnapshotId === undefined ? [] : [m.Ebs.SnapshotId]))
      // Written before the image goes: a delete that stops after the deregistration is finished
      // by the next, and listed until then. The image's name and source go along, for an image
      // made before its snapshots were tagged at creation.
      if (snapshotIds.length > 0) {
        const source = tagValue(image.Tags, SOURCE_TAG)
        const tags = [
          ...deps.managedTags,
          { key: IMAGE_TAG, value: id },
          ...(image.Name === undefined ? [] : [{ key: "Name", value: image.Name }]),
          ...(source === undefined ? [] : [{ key: SOURCE_TAG, value: source }])
        ]
        yield* api.createTags(where, snapshotIds, tags).pipe(Effect.mapError((e) => toProviderError(e)))
      }
      yield* api.deregisterImage(where, id).pipe(
        Effect.catchIf((e) => e.code.startsWith("InvalidAMIID."), () => Effect.void),
        Effect.mapError((e) => toProviderError(e))
      )
      // The snapshots can only go once the image no longer uses them.
      yield* deleteEbsSnapshots(where, id, snapshotIds)
    })

  return { nameProblem, idProblem, create, list, delete: remove }
}
