import { decodeDurationOption, type DurationOption, envSettingFor, optionsShapeProblem, parseDuration } from "@skyrepl/core"
import { Duration, Effect, Either, Option } from "effect"
import { accessSync, constants, statSync } from "node:fs"
import { homedir } from "node:os"
import { delimiter, join } from "node:path"

/** Looks a host name up; an empty answer means it does not resolve. */
export type LookupHost = (host: string) => Effect.Effect<ReadonlyArray<string>>

export interface OrbStackProviderOptions {
  /** The `orbctl` executable, a path or a name looked up on PATH. `SKYREPL_ORBCTL`, default `orbctl`. */
  readonly orbctl?: string
  /** Extra environment for every `orbctl` call (an emulator's state directory, for instance). */
  readonly orbctlEnv?: Readonly<Record<string, string>>
  /**
   * How long a new machine may take to reach `running` once `orbctl create` has returned
   * (`create` itself may take minutes the first time, while OrbStack downloads the image).
   * `SKYREPL_ORBSTACK_BOOT_TIMEOUT`, default 30 s.
   */
  readonly bootTimeout?: DurationOption
  /** Longest any single `orbctl` call may take before it is killed. Default 60 s. */
  readonly commandTimeout?: DurationOption
  /**
   * The name under which machines reach this Mac. An agent URL on a loopback address is
   * rewritten to it, since a machine's own 127.0.0.1 is not the Mac's.
   * `SKYREPL_ORBSTACK_HOST_ALIAS`, default `host.orb.internal`.
   */
  readonly hostAlias?: string
  /** The architecture when a spec names none: `arm64` on Apple Silicon, else `amd64`. */
  readonly defaultArch?: "arm64" | "amd64"
  /** DNS step of the IP discovery chain; the system resolver (`{name}.orb.local`) by default. */
  readonly lookupHost?: LookupHost
  /** How often `orbctl info` is polled while a machine boots. Default 100 ms. */
  readonly pollInterval?: DurationOption
}

export interface ResolvedOptions {
  readonly orbctl: string
  readonly orbctlEnv: Readonly<Record<string, string>>
  readonly bootTimeout: Duration.Duration
  readonly commandTimeout: Duration.Duration
  readonly hostAlias: string
  readonly defaultArch: "arm64" | "amd64"
  readonly lookupHost: LookupHost | null
  readonly pollInterval: Duration.Duration
  /** A malformed `SKYREPL_ORBSTACK_*` variable: reported by the provider's first use. */
  readonly configError: string | null
}

/** The architecture OrbStack machines run natively here (Rosetta makes the other one slow). */
export const hostArch = (): "arm64" | "amd64" => (process.arch === "arm64" ? "arm64" : "amd64")

/**
 * Whether `host` can be an agent URL's host as given. A URL ignores a host it cannot take
 * (`url.hostname = "bad host!"` leaves 127.0.0.1 there), so a malformed alias told machines to
 * call themselves, and the launch waited out its boot time-out.
 */
const isUrlHost = (host: string): boolean => {
  try {
    return new URL(`http://${host}/`).hostname === host.toLowerCase()
  } catch {
    return false
  }
}

/**
 * Applies the environment and the defaults. Never fails, because building the provider must not
 * (every CLI command builds every provider): a malformed variable is kept as `configError` and
 * refused when OrbStack is first used, so only a command that needs OrbStack stops on it.
 */
/** Every option's name; `satisfies` keeps the list whole as options are added. */
const OPTION_NAMES = Object.keys({
  orbctl: true,
  orbctlEnv: true,
  bootTimeout: true,
  commandTimeout: true,
  hostAlias: true,
  defaultArch: true,
  lookupHost: true,
  pollInterval: true
} satisfies Record<keyof OrbStackProviderOptions, true>)

export const resolveOptions = (given: OrbStackProviderOptions): Effect.Effect<ResolvedOptions> =>
  Effect.gen(function* () {
    const shape = optionsShapeProblem("OrbStackProvider", given, OPTION_NAMES)
    // Not an object: none given (the problem refuses every use).
    const options: OrbStackProviderOptions = typeof given === "object" && given !== null ? given : {}
    const orbctlSetting = yield* envSettingFor("SKYREPL_ORBCTL", options.orbctl)
    const aliasSetting = yield* envSettingFor("SKYREPL_ORBSTACK_HOST_ALIAS", options.hostAlias)
    const bootSetting = yield* envSettingFor("SKYREPL_ORBSTACK_BOOT_TIMEOUT", options.bootTimeout)
    const [orbctl, hostAlias, bootText] = [orbctlSetting.value, aliasSetting.value, bootSetting.value]
    const parsedBoot = Option.map(bootText, (text) =>
      Either.filterOrLeft(parseDuration(text), (d) => Duration.greaterThan(d, Duration.zero), () => "must be longer than 0")
    )
    const envBoot = Option.flatMap(parsedBoot, Either.getRight)
    const bootError = Option.match(Option.flatMap(parsedBoot, Either.getLeft), {
      onNone: () => null,
      onSome: (message) => `SKYREPL_ORBSTACK_BOOT_TIMEOUT: ${message}`
    })
    const aliasError = Option.match(hostAlias, {
      onNone: () => null,
      onSome: (alias) => (isUrlHost(alias) ? null : `SKYREPL_ORBSTACK_HOST_ALIAS: "${alias}" is not a host name or an IP address (e.g. host.orb.internal)`)
    })
    // Durations in code take the forms launch's maxDuration takes: Duration.decode threw
    // "Invalid DurationInput" for "30s" as the layer was built, which failed every provider.
    // Each is positive and finite: a pollInterval of 0 spun, a timeout of 0 failed every call.
    const problems: Array<string> = []
    const duration = (name: string, given: DurationOption | undefined, fallback: Duration.Duration): Duration.Duration => {
      if (given === undefined) return fallback
      const decoded = decodeDurationOption(given)
      if (Either.isRight(decoded)) return decoded.right
      problems.push(`the ${name} option: ${decoded.left}`)
      return fallback
    }
    const bootTimeout = duration("bootTimeout", options.bootTimeout, Option.getOrElse(envBoot, () => Duration.seconds(30)))
    const commandTimeout = duration("commandTimeout", options.commandTimeout, Duration.seconds(60))
    const pollInterval = duration("pollInterval", options.pollInterval, Duration.millis(100))
    return {
      orbctl: options.orbctl ?? Option.getOrElse(orbctl, () => "orbctl"),
      orbctlEnv: options.orbctlEnv ?? {},
      bootTimeout,
      commandTimeout,
      hostAlias: options.hostAlias ?? Option.getOrElse(hostAlias, () => "host.orb.internal"),
      defaultArch: options.defaultArch ?? hostArch(),
      lookupHost: options.lookupHost ?? null,
      pollInterval,
      // An explicit option wins over the environment, so a bad variable it overrides is moot.
      configError:
        shape ??
        (problems.length === 0 ? null : problems.join("; ")) ??
        orbctlSetting.problem ??
        (options.bootTimeout === undefined ? (bootSetting.problem ?? bootError) : null) ??
        (options.hostAlias === undefined ? (aliasSetting.problem ?? aliasError) : null)
    }
  })

const isExecutable = (path: string): boolean => {
  try {
    accessSync(path, constants.X_OK)
    return statSync(path).isFile()
  } catch {
    return false
  }
}

/**
 * Where OrbStack puts `orbctl` when the shell's PATH does not name it: its own command-line
 * folder, the app bundle, Homebrew's prefixes. A login shell has them on PATH; cron, launchd
 * jobs and IDEs often do not.
 */
export const orbctlLocations = (): ReadonlyArray<string> => [
  "/usr/local/bin/orbctl",
  "/opt/homebrew/bin/orbctl",
  join(homedir(), ".orbstack", "bin", "orbctl"),
  "/Applications/OrbStack.app/Contents/MacOS/bin/orbctl"
]

/**
 * The executable to run: a path is taken as given; a name is looked up on `path` (PATH), then in
 * OrbStack's own locations. `null`: there is no orbctl here, so there is no OrbStack either.
 */
export const locateOrbctl = (command: string, path: string | undefined): string | null => {
  if (command.includes("/")) return isExecutable(command) ? command : null
  for (const dir of (path ?? "").split(delimiter)) {
    if (dir !== "" && isExecutable(join(dir, command))) return join(dir, command)
  }
  if (command !== "orbctl") return null
  return orbctlLocations().find(isExecutable) ?? null
}
