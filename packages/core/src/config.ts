import { Config, ConfigError, Context, Duration, Effect, Either, Layer, Option, ParseResult, Schema } from "effect"
import { homedir } from "node:os"
import { join, resolve } from "node:path"
import { formatDuration, parseDuration, tooLongToCount } from "./duration.ts"
import { isDottedDigits, isIpAddress } from "./ip-address.ts"

/**
 * Engine settings. Every field can be set in code; `SkyReplConfig.fromEnv` reads the
 * `SKYREPL_*` variables documented in docs/configuration.md.
 */
export interface SkyReplSettings {
  /** State directory: the store, instance logs, keys. `SKYREPL_HOME`, default `~/.repl`. */
  readonly home: string
  /** How long a controller's claim on its instances lasts without renewal. */
  readonly leaseTtl: Duration.Duration
  /** How often the agent heartbeats and the hub pings the agent. */
  readonly heartbeatInterval: Duration.Duration
  /** Silence from the controller after which the agent ends its instance. */
  readonly deadmanTimeout: Duration.Duration
  /** How long to wait for a new instance's agent to register. */
  readonly bootTimeout: Duration.Duration
  /** Interface the agent endpoint binds to. */
  readonly hubHost: string
  /** Port of the agent endpoint; 0 picks a free one. */
  readonly hubPort: number
  /** URL the agent is told to call back; defaults to http://hubHost:port. */
  readonly controlPlaneUrl: string | null
  /** Provider used when a launch names none. */
  readonly defaultProvider: string
}

export const defaultSettings = (home: string = join(homedir(), ".repl")): SkyReplSettings => ({
  home,
  leaseTtl: Duration.seconds(30),
  heartbeatInterval: Duration.seconds(5),
  deadmanTimeout: Duration.seconds(60),
  bootTimeout: Duration.seconds(60),
  hubHost: "127.0.0.1",
  hubPort: 0,
  controlPlaneUrl: null,
  defaultProvider: "local"
})

const durationConfig = (name: string) =>
  Config.string(name).pipe(
    Config.mapOrFail((text) =>
      Either.mapLeft(parseDuration(text), (message) => ConfigError.InvalidData([], message))
    ),
    Config.option
  )

/** The variable each setting is read from (the one list of them). */
const variables: { readonly [K in keyof SkyReplSettings]: string } = {
  home: "SKYREPL_HOME",
  leaseTtl: "SKYREPL_LEASE_TTL",
  heartbeatInterval: "SKYREPL_HEARTBEAT_INTERVAL",
  deadmanTimeout: "SKYREPL_DEADMAN_TIMEOUT",
  bootTimeout: "SKYREPL_BOOT_TIMEOUT",
  hubHost: "SKYREPL_HUB_HOST",
  hubPort: "SKYREPL_HUB_PORT",
  controlPlaneUrl: "SKYREPL_CONTROL_PLANE_URL",
  defaultProvider: "SKYREPL_PROVIDER"
}

const hostName = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/

/**
 * What the agent endpoint can be told to listen on: an IP address, or a host name. Digits and
 * dots alone are an IPv4 address or nothing (`999.1.1.1` is not a name to look up).
 */
const isHostAddress = (host: string): boolean =>
  isIpAddress(host) || (!isDottedDigits(host) && hostName.test(host))

const isHttpUrl = (text: string): boolean => {
  try {
    const { protocol } = new URL(text)
    return protocol === "http:" || protocol === "https:"
  } catch {
    return false
  }
}

/** The longest dead-man window an agent keeps (docs/agent-protocol.md, "Timings"). */
const MAX_DEADMAN = Duration.days(1)

/**
 * Settings that parse but cannot run an engine, one problem per setting. A zero lease makes the
 * reaper repeat with no pause at all, starving everything else in the process (signals
 * included); a dead-man timeout not well above the heartbeat interval ends healthy runs
 * between two heartbeats; an empty home is the current directory.
 */
export const settingsProblems = (
  settings: SkyReplSettings
): ReadonlyArray<{ readonly setting: keyof SkyReplSettings; readonly message: string }> => {
  const problems: Array<{ setting: keyof SkyReplSettings; message: string }> = []
  if (settings.home.trim() === "") problems.push({ setting: "home", message: "must not be empty" })
  for (const setting of ["leaseTtl", "heartbeatInterval", "deadmanTimeout", "bootTimeout"] as const) {
    if (!Duration.greaterThan(settings[setting], Duration.zero)) problems.push({ setting, message: "must be longer than 0" })
    // As launch's maxDuration (decodeDurationOption): the agent is told these in milliseconds,
    // and Duration.nanos(10n) was a lease renewed, and a heartbeat sent, without pause.
    else if (Duration.lessThan(settings[setting], Duration.millis(1))) {
      problems.push({ setting, message: `must be at least 1ms, not ${Duration.format(settings[setting])}` })
    }
  }
  // A lease that never expires is never reaped from another machine. A heartbeat that never
  // comes leaves the agent's event stream silent (it would reconnect for ever) and no instance
  // checked for; a boot that may take for ever holds a launch, and its paid VM, while an agent
  // that never started cannot end it.
  // Finite but past a whole count of milliseconds (Duration.days(1e15)) is the same for ever,
  // and what parseDuration refuses in a variable.
  for (const setting of ["leaseTtl", "heartbeatInterval", "bootTimeout"] as const) {
    const ms = Duration.toMillis(settings[setting])
    if (!Number.isFinite(ms)) problems.push({ setting, message: "must be finite" })
    else if (tooLongToCount(ms)) problems.push({ setting, message: "is too long to count in milliseconds" })
  }
  // Node's listen throws on such a port, at the first launch rather than here.
  if (!Number.isInteger(settings.hubPort) || settings.hubPort < 0 || settings.hubPort > 65_535) {
    problems.push({ setting: "hubPort", message: `${settings.hubPort} is not a port (an integer from 0 to 65535; 0 picks a free one)` })
  }
  if (!isHostAddress(settings.hubHost)) {
    problems.push({ setting: "hubHost", message: `"${settings.hubHost}" is not an IP address or a host name to listen on (e.g. 127.0.0.1, 0.0.0.0, ::)` })
  }
  if (settings.controlPlaneUrl !== null && !isHttpUrl(settings.controlPlaneUrl)) {
    problems.push({ setting: "controlPlaneUrl", message: `"${settings.controlPlaneUrl}" is not an http:// or https:// URL, which is all an agent can call` })
  }
  if (settings.defaultProvider.trim() === "") problems.push({ setting: "defaultProvider", message: "must not be empty" })
  if (Duration.greaterThan(settings.deadmanTimeout, MAX_DEADMAN)) {
    problems.push({ setting: "deadmanTimeout", message: `must be at most ${formatDuration(MAX_DEADMAN)}: the agent keeps its dead-man window within a day` })
  }
  const heartbeatMs = Duration.toMillis(settings.heartbeatInterval)
  if (heartbeatMs > 0 && Number.isFinite(heartbeatMs) && Duration.toMillis(settings.deadmanTimeout) < 2 * heartbeatMs) {
    problems.push({
      setting: "deadmanTimeout",
      message: `must be at least twice the heartbeat interval (${formatDuration(settings.heartbeatInterval)}), or one late heartbeat ends a healthy run`
    })
  }
  return problems
}

/** A decoding failure of settings or options given in code, as a `ConfigError` naming its first field. */
export const configErrorFrom = (error: ParseResult.ParseError): ConfigError.ConfigError => {
  const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
  return ConfigError.InvalidData(issue === undefined ? [] : issue.path.map(String), issue?.message ?? error.message)
}

const DurationSetting = Schema.DurationFromSelf.annotations({
  message: (issue) => `must be a Duration (e.g. Duration.seconds(30)), not ${JSON.stringify(issue.actual) ?? String(issue.actual)}`
})

/** The settings' types. Settings given in code from plain JavaScript, or behind a cast, may be anything. */
const SettingsShape = Schema.Struct({
  home: Schema.String,
  leaseTtl: DurationSetting,
  heartbeatInterval: DurationSetting,
  deadmanTimeout: DurationSetting,
  bootTimeout: DurationSetting,
  hubHost: Schema.String,
  hubPort: Schema.Number,
  controlPlaneUrl: Schema.NullOr(Schema.String),
  defaultProvider: Schema.String
})

/**
 * Fails with a `ConfigError` naming the first setting that cannot run an engine: by its variable
 * when `fromEnv` is true, by its field name otherwise. A setting of the wrong type (`leaseTtl:
 * "30s"`, `home: 5`) is one too: the checks of the values threw on it, a defect at start-up.
 */
export const checkSettings = (settings: SkyReplSettings, fromEnv = false): Effect.Effect<void, ConfigError.ConfigError> => {
  const shape = Schema.decodeUnknownEither(SettingsShape)(settings)
  // Only settings given in code can be of the wrong type: the variables are parsed into them.
  if (Either.isLeft(shape)) return Effect.fail(configErrorFrom(shape.left))
  const problem = settingsProblems(settings)[0]
  if (problem === undefined) return Effect.void
  return Effect.fail(ConfigError.InvalidData([fromEnv ? variables[problem.setting] : problem.setting], problem.message))
}

/** What is said of a `SKYREPL_*` variable set to nothing but blanks. */
export const EMPTY_SETTING = "must not be empty"

/**
 * A `SKYREPL_*` variable as the one rule for all of them reads it: unset is none (the default
 * applies), and set but empty or blank is a mistake to name (Left, the problem's line), never
 * taken for unset. `SKYREPL_HOME=$DIR` with `DIR` unset would otherwise use `~/.repl`, and an
 * empty `SKYREPL_AWS_ENDPOINT` would send an emulator's calls to AWS itself. Providers keep the
 * Left among their problems; the engine fails with it.
 */
export const envSetting = (name: string): Effect.Effect<Either.Either<Option.Option<string>, string>> =>
  Config.option(Config.string(name)).pipe(
    Effect.map((value): Either.Either<Option.Option<string>, string> =>
      Option.isSome(value) && value.value.trim() === "" ? Either.left(`${name}: ${EMPTY_SETTING}`) : Either.right(value)
    ),
    // A config provider that cannot be read is no setting given.
    Effect.orElseSucceed(() => Either.right(Option.none<string>()))
  )

/**
 * A provider's `SKYREPL_*` variable that stands for one of its options: the variable's value,
 * and the problem of one set but empty (`envSetting`), which is moot (null) when the option it
 * stands for was given in code. The one reading the AWS, local and OrbStack providers share.
 */
export const envSettingFor = (
  name: string,
  given: unknown
): Effect.Effect<{ readonly value: Option.Option<string>; readonly problem: string | null }> =>
  Effect.map(
    envSetting(name),
    Either.match({
      onLeft: (problem) => ({ value: Option.none<string>(), problem: given === undefined ? problem : null }),
      onRight: (value) => ({ value, problem: null })
    })
  )

/**
 * Reads `SKYREPL_*` variables over the defaults; a malformed value, or settings that cannot run
 * an engine (`settingsProblems`), is a `ConfigError` naming the variable.
 */
export const settingsFromEnv: Effect.Effect<SkyReplSettings, ConfigError.ConfigError> = Effect.gen(function* () {
  for (const name of Object.values(variables)) {
    if (Either.isLeft(yield* envSetting(name))) return yield* Effect.fail(ConfigError.InvalidData([name], EMPTY_SETTING))
  }
  const home = yield* Config.option(Config.string(variables.home))
  // A relative home is taken from where the process started, so that it names one place
  // whatever directory anything runs in later (an empty one is refused by checkSettings).
  const base = defaultSettings(Option.getOrUndefined(Option.map(home, (h) => (h.trim() === "" ? h : resolve(h)))))
  const leaseTtl = yield* durationConfig(variables.leaseTtl)
  const heartbeatInterval = yield* durationConfig(variables.heartbeatInterval)
  const deadmanTimeout = yield* durationConfig(variables.deadmanTimeout)
  const bootTimeout = yield* durationConfig(variables.bootTimeout)
  const hubHost = yield* Config.option(Config.string(variables.hubHost))
  const hubPort = yield* Config.option(Config.port(variables.hubPort))
  const controlPlaneUrl = yield* Config.option(Config.url(variables.controlPlaneUrl))
  const defaultProvider = yield* Config.option(Config.string(variables.defaultProvider))
  const settings: SkyReplSettings = {
    home: base.home,
    leaseTtl: Option.getOrElse(leaseTtl, () => base.leaseTtl),
    heartbeatInterval: Option.getOrElse(heartbeatInterval, () => base.heartbeatInterval),
    deadmanTimeout: Option.getOrElse(deadmanTimeout, () => base.deadmanTimeout),
    bootTimeout: Option.getOrElse(bootTimeout, () => base.bootTimeout),
    hubHost: Option.getOrElse(hubHost, () => base.hubHost),
    hubPort: Option.getOrElse(hubPort, () => base.hubPort),
    controlPlaneUrl: Option.match(controlPlaneUrl, { onNone: () => base.controlPlaneUrl, onSome: (u) => u.toString().replace(/\/$/, "") }),
    defaultProvider: Option.getOrElse(defaultProvider, () => base.defaultProvider)
  }
  yield* checkSettings(settings, true)
  return settings
})

export class SkyReplConfig extends Context.Tag("@skyrepl/core/SkyReplConfig")<SkyReplConfig, SkyReplSettings>() {
  static readonly layer = (settings: Partial<SkyReplSettings> = {}): Layer.Layer<SkyReplConfig> =>
    Layer.succeed(SkyReplConfig, { ...defaultSettings(settings.home), ...settings })

  /** Environment first, then `overrides` on top (explicit code wins over the environment). */
  static readonly fromEnv = (overrides: Partial<SkyReplSettings> = {}): Layer.Layer<SkyReplConfig, ConfigError.ConfigError> =>
    Layer.effect(
      SkyReplConfig,
      Effect.map(settingsFromEnv, (s) => ({ ...s, ...overrides }))
    )
}

/** A `ConfigError` as one line naming the setting, e.g. `SKYREPL_LEASE_TTL: invalid duration "30": …`. */
export const describeConfigError = (error: ConfigError.ConfigError): string => {
  switch (error._op) {
    case "InvalidData":
    case "MissingData":
    case "SourceUnavailable":
    case "Unsupported":
      return error.path.length === 0 ? error.message : `${error.path.join(".")}: ${error.message}`
    case "And":
    case "Or":
      return describeConfigError(error.left)
  }
}
