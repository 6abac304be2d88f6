import { describeParseError, type ObservedState, type ProviderError } from "@skyrepl/core"
import { Duration, Effect, Either, Option, type ParseResult, Schema } from "effect"
import { ipExhausted, orbctlMissing, providerError } from "./failures.ts"
import type { OrbStackSpec } from "./spec.ts"

// ---------------------------------------------------------------------------------------------
// What orbctl prints, decoded at the edge. Only the fields SkyREPL reads are declared; OrbStack
// adds fields between versions, and extra ones are ignored.

export const MachineImage = Schema.Struct({
  distro: Schema.String,
  version: Schema.String,
  arch: Schema.String
})

/** One element of `orbctl list -f json`, and `record` of `orbctl info NAME -f json`. */
export const MachineRecord = Schema.Struct({
  id: Schema.String.pipe(Schema.minLength(1)),
  name: Schema.String.pipe(Schema.minLength(1)),
  state: Schema.String,
  image: Schema.optional(MachineImage)
})
export type MachineRecord = typeof MachineRecord.Type

/** `orbctl info NAME -f json`: the record plus live addresses (empty while stopped). */
export const MachineInfo = Schema.Struct({
  record: MachineRecord,
  ip4: Schema.optionalWith(Schema.String, { default: () => "" }),
  ip6: Schema.optionalWith(Schema.String, { default: () => "" })
})
export type MachineInfo = typeof MachineInfo.Type

/** An empty inventory may print as `null`. */
const MachineList = Schema.NullOr(Schema.Array(MachineRecord))

const decodeList = Schema.decodeUnknownEither(Schema.parseJson(MachineList))
const decodeInfo = Schema.decodeUnknownEither(Schema.parseJson(MachineInfo))

/** OrbStack's machine states, as the engine sees them. Unknown (newer) states count as on their way. */
export const observedState = (state: string): Exclude<ObservedState, "gone"> => {
  switch (state) {
    case "running":
      return "running"
    case "stopping":
    case "stopped":
    case "deleting":
      return "stopping"
    default:
      return "pending"
  }
}

/** `Version: 1.11.3 (1110300)` → `1.11.3`; another layout is kept whole rather than refused. */
export const parseVersion = (stdout: string): string => {
  const match = /^Version:\s*(\S+)/m.exec(stdout)
  return match?.[1] ?? (stdout.trim().split("\n")[0] ?? "")
}

// ---------------------------------------------------------------------------------------------
// Calling orbctl

export interface OrbctlOptions {
  readonly command: string
  readonly env: Readonly<Record<string, string>>
  readonly timeout: Duration.Duration
}

export interface CommandResult {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

const notFoundPattern = /no machine found|machine not found|no such machine/i
const transientPattern = /timed? ?out|timeout|connection (?:refused|reset|lost)|network|dial tcp|temporar|try again/i

/** First line of what orbctl said, for messages. */
const said = (result: CommandResult): string =>
  (result.stderr.trim() || result.stdout.trim()).split("\n")[0] ?? ""

export const isNotFound = (result: CommandResult): boolean => result.exitCode !== 0 && notFoundPattern.test(said(result))

/** Turns a failed orbctl call into a classified error; `name` is the machine it was about. */
export const classify = (operation: string, name: string | null, result: CommandResult): ProviderError => {
  const text = said(result)
  if (/missing IP address/i.test(text)) return ipExhausted(operation, name ?? "the machine", text)
  if (notFoundPattern.test(text)) return providerError(operation, "not-found", `orbctl ${operation}: ${text}`)
  if (/already exists/i.test(text)) return providerError(operation, "invalid-request", `orbctl ${operation}: ${text}`)
  if (transientPattern.test(text)) return providerError(operation, "transient", `orbctl ${operation}: ${text}`)
  return providerError(operation, "internal", `orbctl ${operation} exited with ${result.exitCode}: ${text || "no message"}`)
}

const errorCode = (value: object): string | undefined =>
  "code" in value && typeof value.code === "string" ? value.code : undefined

type Execa = typeof import("execa")

/**
 * execa, loaded on the first orbctl call. Every `repl` command builds every provider, and
 * loading execa with its dependencies costs more than most of those commands take; only a
 * command that actually talks to OrbStack pays for it.
 */
let loaded: Execa | undefined
const loadExeca: Effect.Effect<Execa> = Effect.suspend(() =>
  loaded !== undefined
    ? Effect.succeed(loaded)
    : Effect.promise(() => import("execa")).pipe(Effect.tap((module) => Effect.sync(() => void (loaded = module))))
)

/**
 * execa's synchronous half, for a process that is exiting and can no longer wait for an import.
 * `undefined` until some orbctl call has loaded execa; a process that never called orbctl has
 * started no machine of its own to end.
 */
export const loadedExecaSync = (): Execa["execaSync"] | undefined => loaded?.execaSync

/**
 * Runs `orbctl ARGS`. Resolves with the exit status whatever it is; fails only when orbctl
 * could not be run or did not finish in time. `input` is written to its stdin.
 */
export const call = (
  options: OrbctlOptions,
  operation: string,
  args: ReadonlyArray<string>,
  input?: string
): Effect.Effect<CommandResult, ProviderError> =>
  Effect.gen(function* () {
    const { execa } = yield* loadExeca
    const result = yield* Effect.promise((signal) =>
      execa(options.command, args, {
        env: options.env,
        reject: false,
        timeout: Duration.toMillis(options.timeout),
        cancelSignal: signal,
        ...(input === undefined ? { stdin: "ignore" as const } : { input }),
        stripFinalNewline: false
      })
    )
    const code = errorCode(result)
    if (code === "ENOENT") return yield* orbctlMissing(operation, options.command, result)
    if (code === "EACCES") {
      return yield* providerError(operation, "unavailable", `${options.command} is not executable: ${result.shortMessage}`, result)
    }
    if (result.timedOut) {
      return yield* providerError(
        operation,
        "transient",
        `orbctl ${args[0] ?? ""} did not finish within ${Duration.format(options.timeout)}`,
        result
      )
    }
    if (result.isCanceled) return yield* Effect.interrupt
    if (result.exitCode === undefined) {
      return yield* providerError(operation, "internal", `orbctl ${args[0] ?? ""}: ${result.shortMessage}`, result)
    }
    return { exitCode: result.exitCode, stdout: String(result.stdout ?? ""), stderr: String(result.stderr ?? "") }
  })

/** The orbctl commands the provider uses, bound to one executable and environment. */
export interface Orbctl {
  /** `orbctl version`: the version, once OrbStack answers. */
  readonly version: Effect.Effect<string, ProviderError>
  /** `orbctl list -f json`: every machine. */
  readonly list: Effect.Effect<ReadonlyArray<MachineRecord>, ProviderError>
  /** `orbctl info NAME -f json`; none when there is no such machine. */
  readonly info: (name: string) => Effect.Effect<Option.Option<MachineInfo>, ProviderError>
  /** `orbctl create DISTRO:VERSION NAME -a ARCH`. */
  readonly create: (name: string, spec: OrbStackSpec) => Effect.Effect<void, ProviderError>
  /** `orbctl start NAME`. */
  readonly start: (name: string) => Effect.Effect<void, ProviderError>
  /** `orbctl stop NAME`; `false` when there is no such machine. */
  readonly stop: (name: string) => Effect.Effect<boolean, ProviderError>
  /** `orbctl delete -f NAME`; `false` when there is no such machine. */
  readonly delete: (name: string) => Effect.Effect<boolean, ProviderError>
  /** `orbctl clone SOURCE TARGET`. */
  readonly clone: (source: string, target: string) => Effect.Effect<void, ProviderError>
  /** `orbctl run -m NAME [-u USER] COMMAND...`, with `input` on its stdin. Any exit status resolves. */
  readonly run: (
    name: string,
    command: ReadonlyArray<string>,
    options?: { readonly user?: string; readonly input?: string }
  ) => Effect.Effect<CommandResult, ProviderError>
}

const decoded = <A>(operation: string, result: Either.Either<A, ParseResult.ParseError>) =>
  Either.match(result, {
    onLeft: (error) =>
      Effect.fail(providerError(operation, "internal", `orbctl ${operation} printed something unexpected: ${describeParseError(error)}`)),
    onRight: (value) => Effect.succeed(value)
  })

export const makeOrbctl = (options: OrbctlOptions): Orbctl => {
  const run = (operation: string, args: ReadonlyArray<string>, input?: string) => call(options, operation, args, input)
  const ok = (operation: string, name: string | null, args: ReadonlyArray<string>) =>
    Effect.flatMap(run(operation, args), (result) =>
      result.exitCode === 0 ? Effect.succeed(result) : Effect.fail(classify(operation, name, result))
    )
  /** Commands that are done when the machine is not there (stop, delete). */
  const unlessMissing = (operation: string, name: string, args: ReadonlyArray<string>) =>
    // Without a name, `orbctl stop` stops OrbStack itself, and every machine with it.
    name.trim() === ""
      ? Effect.fail(providerError(operation, "invalid-request", `orbctl ${operation} needs a machine name`))
      : Effect.flatMap(run(operation, args), (result) => {
      if (result.exitCode === 0) return Effect.succeed(true)
      if (isNotFound(result)) return Effect.succeed(false)
      return Effect.fail(classify(operation, name, result))
    })
  return {
    version: Effect.map(ok("version", null, ["version"]), (result) => parseVersion(result.stdout)),
    list: ok("list", null, ["list", "-f", "json"]).pipe(
      Effect.flatMap((result) => decoded("list", decodeList(result.stdout))),
      Effect.map((machines) => machines ?? [])
    ),
    info: (name) =>
      Effect.flatMap(run("info", ["info", name, "-f", "json"]), (result) => {
        if (result.exitCode === 0) return Effect.map(decoded("info", decodeInfo(result.stdout)), Option.some)
        if (isNotFound(result)) return Effect.succeed(Option.none())
        return Effect.fail(classify("info", name, result))
      }),
    create: (name, spec) => Effect.asVoid(ok("create", name, ["create", `${spec.distro}:${spec.version}`, name, "-a", spec.arch])),
    start: (name) => Effect.asVoid(ok("start", name, ["start", name])),
    stop: (name) => unlessMissing("stop", name, ["stop", name]),
    delete: (name) => unlessMissing("delete", name, ["delete", "-f", name]),
    clone: (source, target) => Effect.asVoid(ok("clone", source, ["clone", source, target])),
    run: (name, command, runOptions = {}) =>
      run("run", ["run", "-m", name, ...(runOptions.user === undefined ? [] : ["-u", runOptions.user]), ...command], runOptions.input)
  }
}
