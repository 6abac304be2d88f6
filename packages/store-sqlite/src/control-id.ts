import { describeCause, randomHex, StoreError } from "@skyrepl/core"
import { Effect, Either, Option, Schema } from "effect"
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { basename, dirname, join } from "node:path"

/**
 * The control id is written into every instance name, and the orphan sweep recognises this
 * control plane's instances by it. A copy lives in a file beside the database so that deleting
 * the database does not make still-running instances look like someone else's.
 */
export const CONTROL_ID_FILE = "control-id"

const ControlIdText = Schema.Trim.pipe(Schema.pattern(/^[0-9a-z]{8}$/))
const decodeControlIdText = Schema.decodeUnknownEither(ControlIdText)

const ioError = (operation: string, path: string, cause: unknown): StoreError =>
  new StoreError({
    operation,
    reason: "io",
    message: `${operation}: ${path}: ${describeCause(cause)}`,
    cause
  })

// Duck-typed, not `instanceof Error`: under Jest, Node's own errors come from another realm.
const isMissing = (cause: unknown): boolean =>
  typeof cause === "object" && cause !== null && "code" in cause && cause.code === "ENOENT"

/** The id stored in `path`, if the file exists. A malformed file is refused, not replaced. */
export const readControlIdFile = (path: string): Effect.Effect<Option.Option<string>, StoreError> =>
  Effect.try({
    try: () => readFileSync(path, "utf8"),
    catch: (cause) => cause
  }).pipe(
    Effect.matchEffect({
      onFailure: (cause) => (isMissing(cause) ? Effect.succeedNone : Effect.fail(ioError("read-control-id", path, cause))),
      onSuccess: (text) =>
        Either.match(decodeControlIdText(text), {
          onLeft: () =>
            Effect.fail(
              new StoreError({
                operation: "read-control-id",
                reason: "corrupt",
                message: `${path} does not hold a control id (8 lower-case base36 characters); it names which running instances belong to this state home, so it is not replaced automatically: fix or remove it`
              })
            ),
          onRight: Effect.succeedSome
        })
    })
  )

/**
 * Writes through a temporary file and a rename so a process reading at the same moment sees
 * the old content or the new, never half a file.
 */
export const writeControlIdFile = (path: string, controlId: string): Effect.Effect<void, StoreError> =>
  Effect.try({
    try: () => {
      const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.${randomHex(4)}`)
      try {
        writeFileSync(temporary, `${controlId}\n`, { mode: 0o600 })
        renameSync(temporary, path)
      } finally {
        rmSync(temporary, { force: true })
      }
    },
    catch: (cause) => ioError("write-control-id", path, cause)
  })
