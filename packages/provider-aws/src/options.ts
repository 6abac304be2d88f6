import { decodeDurationOption, type DurationBounds, type DurationOption, envSettingFor, formatDuration, optionsShapeProblem, parseDuration } from "@skyrepl/core"
import { Config, Duration, Effect, Either, Option, type Schedule } from "effect"
import { readFileSync } from "node:fs"
import { homedir } from "node:os"
import { join } from "node:path"

/** Static credentials given in code; otherwise the SDK's standard chain finds them. */
export interface AwsCredentials {
  readonly accessKeyId: string
  readonly secretAccessKey: string
  readonly sessionToken?: string
}

export interface AwsProviderOptions {
  /**
   * Region used when a launch names none, and always scanned by `list`. Default: `AWS_REGION`,
   * `AWS_DEFAULT_REGION`, then `region` of the profile in the shared config file.
   */
  readonly region?: string
  /** Regions `list` and snapshot listings always scan, besides the default. `SKYREPL_AWS_REGIONS` (comma-separated). */
  readonly regions?: ReadonlyArray<string>
  /** EC2 and STS endpoint (an emulator, a VPC endpoint). `SKYREPL_AWS_ENDPOINT`. */
  readonly endpoint?: string
  /** Shared-config profile. Default: `AWS_PROFILE`, else `default`. */
  readonly profile?: string
  /** Static credentials; by default the standard chain (environment, config files, SSO, instance metadata). */
  readonly credentials?: AwsCredentials
  /** State home: key pairs' PEM files go to `{home}/keys/`. `SKYREPL_HOME`, default `~/.repl`. */
  readonly home?: string
  /** Cache of AMI look-ups. `$XDG_CACHE_HOME/skyrepl`, default `~/.cache/skyrepl`. */
  readonly cacheDir?: string
  /** How long a resolved AMI is reused. Default 24 h. */
  readonly amiCacheTtl?: DurationOption
  /**
   * Pause between `RunInstances` attempts after `InsufficientInstanceCapacity`.
   * `SKYREPL_AWS_CAPACITY_BACKOFF`, default 30 s. Ignored when `capacityRetry` is given.
   */
  readonly capacityBackoff?: DurationOption
  /** How many times a launch is retried for capacity before it fails with reason `capacity`. Default 2. */
  readonly capacityRetries?: number
  /**
   * The whole capacity back-off as a schedule; it is fed each capacity `ProviderError` and ends
   * when the launch should give up. Overrides `capacityBackoff` and `capacityRetries`.
   */
  readonly capacityRetry?: Schedule.Schedule<unknown, unknown>
  /**
   * Retries of a single API call that failed with throttling or a transient error (5xx, reset
   * connection, time-out). Default: exponential from 200 ms, jittered, 4 retries.
   */
  readonly callRetry?: Schedule.Schedule<unknown, unknown>
  /** Time limit of one HTTP request to AWS. Default 30 s. */
  readonly requestTimeout?: DurationOption
  /**
   * How long a just-created instance may stay invisible to `DescribeInstances`, how long an
   * image whose `CreateImage` answer was lost is looked for, and how long the EBS snapshots of an
   * image just deregistered may still be "in use" (`InvalidSnapshot.InUse`). Default 60 s.
   */
  readonly visibilityTimeout?: DurationOption
  /** `DescribeInstances` page size for `list` (5 to 1000). Default 1000. */
  readonly pageSize?: number
  /**
   * Longest life of an instance: written to its `skyrepl:expires-at` tag, and the instance
   * powers itself off when it passes, whatever else happens. From 1 minute to 365 days;
   * `SKYREPL_AWS_MAX_LIFETIME`, default 24 h.
   */
  readonly maxLifetime?: DurationOption
}

/** A setting from the environment that could not be used; every call then fails naming it. */
export interface ConfigProblem {
  readonly variable: string
  readonly message: string
}

export interface ResolvedOptions {
  readonly region: string | null
  /** Where the default region came from, for messages. */
  readonly regionSource: string
  readonly regions: ReadonlyArray<string>
  readonly endpoint: string | null
  readonly profile: string | null
  readonly credentials: AwsCredentials | null
  readonly home: string
  readonly cacheDir: string
  readonly amiCacheTtl: Duration.Duration
  readonly capacityBackoff: Duration.Duration
  readonly capacityRetries: number
  readonly capacityRetry: Schedule.Schedule<unknown, unknown> | null
  readonly callRetry: Schedule.Schedule<unknown, unknown> | null
  readonly requestTimeout: Duration.Duration
  readonly visibilityTimeout: Duration.Duration
  readonly pageSize: number
  readonly maxLifetime: Duration.Duration
  readonly problems: ReadonlyArray<ConfigProblem>
}

/** AWS region names: `us-east-1`, `ap-southeast-2`, `us-gov-west-1`, `cn-north-1`, `eu-central-2`. */
export const regionPattern = /^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$/

export const isRegion = (text: string): boolean => regionPattern.test(text)

/** What is said of a region given in a call (a spec's, a snapshot's) that is not a region name. */
export const notARegion = (text: string): string => `"${text}" is not an AWS region name (e.g. us-east-1, eu-west-2)`

/**
 * The endpoint as it may be shown or written down: without its userinfo (`http://user:secret@host`
 * carries a password, or a token as its user name), which must reach no message, log line, file
 * name or file. An endpoint without userinfo is returned as given, so the names derived from it
 * (key files, cache keys) stay those of earlier versions.
 */
export const endpointShown = (endpoint: string): string => {
  const url = URL.canParse(endpoint) ? new URL(endpoint) : null
  // Unparsed, where its userinfo ends is a guess: everything up to the last "@" goes.
  if (url === null) return endpoint.replace(/\/\/.*@/, "//")
  if (url.username === "" && url.password === "") return endpoint
  url.username = ""
  url.password = ""
  return url.href.replace(/\/+$/, "")
}

const env = (name: string): Effect.Effect<string | undefined> =>
  Config.option(Config.nonEmptyString(name)).pipe(
    Effect.map(Option.getOrUndefined),
    Effect.orElseSucceed(() => undefined)
  )

/**
 * The `region` of a profile in the shared config file (`[default]` or `[profile NAME]`). Read
 * directly: the SDK's loader would cost its import (~280 ms) on every CLI call, and this is a
 * few lines of INI.
 */
export const regionFromConfigFile = (text: string, profile: string): string | null => {
  const wanted = profile === "default" ? new Set(["default", "profile default"]) : new Set([`profile ${profile}`])
  let inProfile = false
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/[;#].*$/, "").trim()
    if (line === "") continue
    const section = /^\[\s*(.+?)\s*\]$/.exec(line)
    if (section !== null) {
      inProfile = wanted.has((section[1] ?? "").replace(/\s+/g, " "))
      continue
    }
    if (!inProfile) continue
    const pair = /^([A-Za-z0-9_]+)\s*=\s*(.*)$/.exec(line)
    if (pair !== null && pair[1] === "region" && pair[2] !== undefined && pair[2] !== "") return pair[2]
  }
  return null
}

const readConfigRegion = (path: string, profile: string): string | null => {
  try {
    return regionFromConfigFile(readFileSync(path, "utf8"), profile)
  } catch {
    // No config file is the normal case for users who configure AWS through the environment.
    return null
  }
}

/** The bounds of an instance's longest life (SKYREPL_AWS_MAX_LIFETIME). */
const MIN_LIFETIME = Duration.minutes(1)
const MAX_LIFETIME = Duration.days(365)

/**
 * A duration option given in code: the forms `launch`'s `maxDuration` takes. One that is none is
 * a problem and the default stands meanwhile: Duration.decode threw "Invalid DurationInput" for
 * "30s" as the layer was built, which broke every provider of the engine, not only this one.
 */
const durationOption = (
  name: string,
  given: DurationOption | undefined,
  fallback: Duration.Duration,
  problems: Array<ConfigProblem>,
  bounds: DurationBounds = {}
): Duration.Duration => {
  if (given === undefined) return fallback
  const decoded = decodeDurationOption(given, bounds)
  if (Either.isRight(decoded)) return decoded.right
  problems.push({ variable: name, message: `the ${name} option: ${decoded.left}` })
  return fallback
}

const durationSetting = (
  variable: string,
  option: { readonly name: string; readonly given: DurationOption | undefined },
  fromEnv: string | undefined,
  fallback: Duration.Duration,
  problems: Array<ConfigProblem>,
  bounds: DurationBounds = {}
): Duration.Duration => {
  if (option.given !== undefined) return durationOption(option.name, option.given, fallback, problems, bounds)
  if (fromEnv === undefined) return fallback
  const parsed = parseDuration(fromEnv)
  if (Either.isRight(parsed)) return parsed.right
  problems.push({ variable, message: `${variable}: ${parsed.left}` })
  return fallback
}

/**
 * Applies the environment and defaults. Never fails: the CLI builds every provider for every
 * command, so a bad AWS setting must not break `repl run --provider local`. Problems are kept
 * and reported by the first call that needs AWS.
 */
/** Every option's name; `satisfies` keeps the list whole as options are added. */
const OPTION_NAMES = Object.keys({
  region: true,
  regions: true,
  endpoint: true,
  profile: true,
  credentials: true,
  home: true,
  cacheDir: true,
  amiCacheTtl: true,
  capacityBackoff: true,
  capacityRetries: true,
  capacityRetry: true,
  callRetry: true,
  requestTimeout: true,
  visibilityTimeout: true,
  pageSize: true,
  maxLifetime: true
} satisfies Record<keyof AwsProviderOptions, true>)

export const resolveOptions = (given: AwsProviderOptions): Effect.Effect<ResolvedOptions> =>
  Effect.gen(function* () {
    const problems: Array<ConfigProblem> = []
    const shape = optionsShapeProblem("AwsProvider", given, OPTION_NAMES)
    if (shape !== null) problems.push({ variable: "options", message: shape })
    // Not an object: none given (the problem above refuses every use).
    const options: AwsProviderOptions = typeof given === "object" && given !== null ? given : {}
    // A SKYREPL_* variable set but empty is a problem (envSetting), unless the option it stands
    // for was given; AWS's own variables keep the AWS CLI's reading, where empty is unset.
    const setting = (name: string, given: unknown): Effect.Effect<string | undefined> =>
      Effect.map(envSettingFor(name, given), ({ value, problem }) => {
        if (problem !== null) problems.push({ variable: name, message: problem })
        return Option.getOrUndefined(value)
      })
    const profile = options.profile ?? (yield* env("AWS_PROFILE")) ?? null
    const envRegion = (yield* env("AWS_REGION")) ?? (yield* env("AWS_DEFAULT_REGION"))
    const configFile = (yield* env("AWS_CONFIG_FILE")) ?? join(homedir(), ".aws", "config")
    let region: string | null = null
    let regionSource = "none"
    if (options.region !== undefined) {
      region = options.region
      regionSource = "the provider's region option"
    } else if (envRegion !== undefined) {
      region = envRegion
      regionSource = "AWS_REGION / AWS_DEFAULT_REGION"
    } else {
      region = readConfigRegion(configFile, profile ?? "default")
      if (region !== null) regionSource = `profile "${profile ?? "default"}" in ${configFile}`
    }
    if (region !== null && !isRegion(region)) {
      problems.push({ variable: regionSource, message: `"${region}" (from ${regionSource}) is not an AWS region name` })
      region = null
    }

    const envRegions = yield* setting("SKYREPL_AWS_REGIONS", options.regions)
    const listed = options.regions ?? (envRegions === undefined ? [] : envRegions.split(",").map((r) => r.trim()).filter((r) => r !== ""))
    const regions: Array<string> = []
    for (const r of listed) {
      if (isRegion(r)) regions.push(r)
      else problems.push({ variable: "SKYREPL_AWS_REGIONS", message: `SKYREPL_AWS_REGIONS: "${r}" is not an AWS region name` })
    }

    let endpoint = options.endpoint ?? (yield* setting("SKYREPL_AWS_ENDPOINT", options.endpoint)) ?? null
    if (endpoint !== null) {
      const url = URL.canParse(endpoint) ? new URL(endpoint) : null
      if (url === null || (url.protocol !== "http:" && url.protocol !== "https:")) {
        problems.push({ variable: "SKYREPL_AWS_ENDPOINT", message: `SKYREPL_AWS_ENDPOINT: "${endpointShown(endpoint)}" is not an http(s) URL` })
        endpoint = null
      } else {
        endpoint = endpoint.replace(/\/+$/, "")
      }
    }

    const home = options.home ?? (yield* setting("SKYREPL_HOME", options.home)) ?? join(homedir(), ".repl")
    const xdgCache = yield* env("XDG_CACHE_HOME")
    const cacheDir = options.cacheDir ?? join(xdgCache ?? join(homedir(), ".cache"), "skyrepl")

    const capacityBackoff = durationSetting(
      "SKYREPL_AWS_CAPACITY_BACKOFF",
      { name: "capacityBackoff", given: options.capacityBackoff },
      yield* setting("SKYREPL_AWS_CAPACITY_BACKOFF", options.capacityBackoff),
      Duration.seconds(30),
      problems,
      // 0 retries at once, which a test against an emulator wants.
      { zero: true }
    )
    const maxLifetime = durationSetting(
      "SKYREPL_AWS_MAX_LIFETIME",
      { name: "maxLifetime", given: options.maxLifetime },
      yield* setting("SKYREPL_AWS_MAX_LIFETIME", options.maxLifetime),
      Duration.hours(24),
      problems
    )
    // The instance's own clock ends it at this age (\`sleep\` in its user-data) and its
    // \`skyrepl:expires-at\` tag says when: an infinite one never ended it, and made no date
    // (the launch died building the tag). A year is far beyond any run this safety net is for.
    const lifetimeName = options.maxLifetime === undefined ? "SKYREPL_AWS_MAX_LIFETIME" : "maxLifetime"
    if (!Duration.between(maxLifetime, { minimum: MIN_LIFETIME, maximum: MAX_LIFETIME })) {
      problems.push({ variable: lifetimeName, message: `${lifetimeName}: must be from 1m to 365d, not ${formatDuration(maxLifetime)}` })
    }
    const pageSize = options.pageSize ?? 1000
    if (!Number.isInteger(pageSize) || pageSize < 5 || pageSize > 1000) {
      problems.push({ variable: "pageSize", message: `pageSize must be an integer from 5 to 1000, not ${pageSize}` })
    }
    // Schedule.recurs counts whole retries: NaN or Infinity retried a launch for ever, 2.5 three times.
    let capacityRetries = options.capacityRetries ?? 2
    if (!Number.isSafeInteger(capacityRetries) || capacityRetries < 0) {
      problems.push({ variable: "capacityRetries", message: `capacityRetries must be a whole number, 0 or more, not ${String(capacityRetries)}` })
      capacityRetries = 2
    }

    return {
      region,
      regionSource,
      regions,
      endpoint,
      profile,
      credentials: options.credentials ?? null,
      home,
      cacheDir,
      // 0 is no reuse: every launch looks its image up.
      amiCacheTtl: durationOption("amiCacheTtl", options.amiCacheTtl, Duration.hours(24), problems, { zero: true }),
      capacityBackoff,
      capacityRetries,
      capacityRetry: options.capacityRetry ?? null,
      callRetry: options.callRetry ?? null,
      requestTimeout: durationOption("requestTimeout", options.requestTimeout, Duration.seconds(30), problems),
      // 0 is no wait: what is not visible at once is taken as not there.
      visibilityTimeout: durationOption("visibilityTimeout", options.visibilityTimeout, Duration.seconds(60), problems, { zero: true }),
      pageSize: Math.min(1000, Math.max(5, Math.trunc(pageSize))),
      maxLifetime,
      problems
    } satisfies ResolvedOptions
  })
