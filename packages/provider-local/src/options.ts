import { decodeDurationOption, describeParseError, type DurationOption, envSettingFor, optionsShapeProblem } from "@skyrepl/core"
import { Duration, Effect, Either, Option, Schema } from "effect"
import { accessSync, constants, statSync } from "node:fs"
import { homedir } from "node:os"
import { delimiter, join, resolve } from "node:path"

/**
 * `auto` uses Linux namespaces when this machine allows them and a plain process group
 * otherwise; `namespaces` insists (spawning a sandbox fails with `unavailable` where they do
 * not work); `none` always uses a process group.
 */
export const IsolationMode = Schema.Literal("auto", "namespaces", "none")
export type IsolationMode = typeof IsolationMode.Type

export interface LocalProviderOptions {
  /** State directory; instances live under `{home}/local/instances/{name}`. `SKYREPL_HOME`, default `~/.repl`. */
  readonly home?: string
  /** Python interpreter for the agent. `SKYREPL_PYTHON`, else `/usr/bin/python3`, else `python3` on PATH. */
  readonly python?: string
  readonly isolation?: IsolationMode
  /**
   * How long `terminate` waits for /proc to show the sandbox gone before it reports failure.
   * Default 10 s; the forms `launch`'s `maxDuration` takes (`"10 seconds"`, `"10s"`, a number of
   * milliseconds).
   */
  readonly terminateTimeout?: DurationOption
  /**
   * Whether sandboxes are forked from an interpreter that has loaded the agent already (this
   * package's README, "Fork server"): `auto` starts it with the second launch and forks from
   * the first launch after it is ready; `always` starts it with the first launch, which waits
   * for it; `never` execs every sandbox. `SKYREPL_FORK_SERVER`, default `auto`.
   */
  readonly forkServer?: ForkServerMode
}

export const ForkServerMode = Schema.Literal("auto", "always", "never")
export type ForkServerMode = typeof ForkServerMode.Type

/** Options after defaults and the environment were applied. */
export interface ResolvedOptions {
  readonly home: string
  readonly python: {
    /** What was asked for, for messages. */
    readonly requested: string
    /** `null` when it is not on PATH; spawning then fails with `unavailable`. */
    readonly path: string | null
  }
  readonly isolation: IsolationMode
  readonly terminateTimeout: Duration.Duration
  readonly forkServer: ForkServerMode
  /** What is wrong with the options and the variables read (one message each); spawns fail with them. */
  readonly problems: ReadonlyArray<string>
}

export const isExecutable = (path: string): boolean => {
  try {
    accessSync(path, constants.X_OK)
    return statSync(path).isFile()
  } catch {
    return false
  }
}

/** Looks a program up on PATH without starting a process (a `which` would cost a spawn). */
export const findOnPath = (program: string, path: string | undefined = process.env["PATH"]): string | null => {
  if (program.includes("/")) return isExecutable(program) ? program : null
  for (const dir of (path ?? "").split(delimiter)) {
    if (dir === "") continue
    const candidate = join(dir, program)
    if (isExecutable(candidate)) return candidate
  }
  return null
}

/**
 * The system interpreter comes before PATH because PATH often starts with a version manager's
 * shim, which costs about 170 ms per start; the agent needs only the standard library.
 */
const resolvePython = (explicit: string | undefined): ResolvedOptions["python"] => {
  if (explicit !== undefined) {
    // A path is used as given, so a wrong setting fails loudly at spawn rather than falling back.
    return { requested: explicit, path: explicit.includes("/") ? explicit : findOnPath(explicit) }
  }
  if (isExecutable("/usr/bin/python3")) return { requested: "python3", path: "/usr/bin/python3" }
  return { requested: "python3", path: findOnPath("python3") }
}

const LOCAL_OPTIONS: ReadonlyArray<keyof LocalProviderOptions> = ["home", "python", "isolation", "terminateTimeout", "forkServer"]

const shown = (value: unknown): string => JSON.stringify(value) ?? String(value)

/**
 * The options as given from plain JavaScript (or behind a cast), checked: what is wrong is a
 * problem (a launch is refused with it, nothing recorded) and that option is left at its
 * default. A wrong type threw a TypeError from the layer (`home: 5`, `null`), a mode that is
 * none was taken as `auto`, and a `terminateTimeout` Effect cannot decode (`"10s"`) threw as
 * each instance was terminated, which left it running.
 */
/** One line naming the modes, rather than one per mode that did not match. */
const oneOf = <L extends readonly [string, ...Array<string>]>(modes: Schema.Literal<L>) =>
  modes.annotations({ message: (issue) => ({ message: `${shown(issue.actual)} is not one of ${modes.literals.join(", ")}`, override: true }) })

type CheckedOptions = Omit<LocalProviderOptions, "terminateTimeout"> & { readonly terminateTimeout?: Duration.Duration }

const checkOptions = (given: unknown, problems: Array<string>): CheckedOptions => {
  const shape = optionsShapeProblem("LocalProvider", given, LOCAL_OPTIONS)
  // Options of the wrong shape are refused as a whole: the values are not read one by one, so
  // `home: new String("/srv")` is said once, and not again as "Expected string, actual /srv".
  if (shape !== null) {
    problems.push(shape)
    return {}
  }
  if (typeof given !== "object" || given === null || Array.isArray(given)) return {}
  const field = <A, I>(name: keyof LocalProviderOptions, schema: Schema.Schema<A, I>): A | undefined => {
    const value: unknown = Reflect.get(given, name)
    if (value === undefined) return undefined
    const decoded = Schema.decodeUnknownEither(schema)(value)
    if (Either.isRight(decoded)) return decoded.right
    problems.push(`the ${name} option: ${describeParseError(decoded.left)}`)
    return undefined
  }
  const home = field("home", Schema.String.pipe(Schema.filter((text) => text.trim() !== "" || "must not be empty")))
  const python = field("python", Schema.String.pipe(Schema.filter((text) => text.trim() !== "" || "must not be empty")))
  const isolation = field("isolation", oneOf(IsolationMode))
  const forkServer = field("forkServer", oneOf(ForkServerMode))
  const timeoutGiven: unknown = Reflect.get(given, "terminateTimeout")
  let terminateTimeout: Duration.Duration | undefined
  if (timeoutGiven !== undefined) {
    // Positive and finite: with none, terminate reported failure at once; with no end, never.
    const decoded = decodeDurationOption(timeoutGiven)
    if (Either.isLeft(decoded)) problems.push(`the terminateTimeout option: ${decoded.left}`)
    else terminateTimeout = decoded.right
  }
  return {
    ...(home === undefined ? {} : { home }),
    ...(python === undefined ? {} : { python }),
    ...(isolation === undefined ? {} : { isolation }),
    ...(forkServer === undefined ? {} : { forkServer }),
    ...(terminateTimeout === undefined ? {} : { terminateTimeout })
  }
}

export const resolveOptions = (given: LocalProviderOptions): Effect.Effect<ResolvedOptions> =>
  Effect.gen(function* () {
    const problems: Array<string> = []
    const options = checkOptions(given, problems)
    // An empty variable is a problem (envSetting), unless the option it stands for was given.
    const setting = (name: string, given: unknown) =>
      Effect.map(envSettingFor(name, given), ({ value, problem }) => {
        if (problem !== null) problems.push(problem)
        return value
      })
    const envHome = yield* setting("SKYREPL_HOME", options.home)
    const envPython = yield* setting("SKYREPL_PYTHON", options.python)
    const envForkServer = yield* setting("SKYREPL_FORK_SERVER", options.forkServer)
    const forkServer = Option.match(envForkServer, {
      onNone: () => "auto" as const,
      onSome: (text) => {
        if (Schema.is(ForkServerMode)(text)) return text
        if (options.forkServer === undefined) problems.push(`SKYREPL_FORK_SERVER: "${text}" is not one of auto, always, never`)
        return "auto" as const
      }
    })
    // Absolute: a sandbox starts in its own workdir, where a relative home means another place.
    const home = resolve(options.home ?? Option.getOrElse(envHome, () => join(homedir(), ".repl")))
    const python = resolvePython(options.python ?? Option.getOrUndefined(envPython))
    // An interpreter that was asked for by name or path and is not there is a setting to fix,
    // refused before a launch records anything; the default one missing is checked at spawn.
    const asked = options.python !== undefined ? "the python option" : Option.isSome(envPython) ? "SKYREPL_PYTHON" : null
    if (asked !== null && (python.path === null || !isExecutable(python.path))) {
      problems.push(
        python.path === null
          ? `${asked}: no "${python.requested}" on PATH`
          : `${asked}: ${python.path} is not an executable file`
      )
    }
    return {
      home,
      python,
      isolation: options.isolation ?? "auto",
      terminateTimeout: options.terminateTimeout ?? Duration.seconds(10),
      forkServer: options.forkServer ?? forkServer,
      problems
    }
  })
