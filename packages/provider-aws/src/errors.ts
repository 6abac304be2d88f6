import { ProviderError, type ProviderErrorReason } from "@skyrepl/core"
import { Data } from "effect"
import { PROVIDER_ID } from "./spec.ts"

/**
 * One failed AWS call, as AWS (or the network) reported it. It is the `cause` of the
 * `ProviderError` the provider fails with, so SDK users can match on `code`:
 *
 * ```ts
 * Effect.catchTag("ProviderError", (e) => awsErrorCode(e) === "VcpuLimitExceeded" ? ... : ...)
 * ```
 */
export class AwsError extends Data.TaggedError("AwsError")<{
  /** The API action, e.g. `RunInstances`. */
  readonly operation: string
  /** AWS's error code (`InsufficientInstanceCapacity`, `UnauthorizedOperation` …), or the SDK's or network's (`TimeoutError`, `ECONNRESET`, `CredentialsProviderError`). */
  readonly code: string
  readonly message: string
  readonly region: string | null
  readonly httpStatus: number | null
  readonly requestId: string | null
  readonly cause?: unknown
  /** Failed again after this provider's own retries (`callRetry`): the engine adds none but to a termination. */
  readonly retried?: boolean
}> {}

/** The AWS error code behind a provider error, when it came from AWS. */
export const awsErrorCode = (error: ProviderError): string | null =>
  error.cause instanceof AwsError ? error.cause.code : null

const throttlingCodes: ReadonlySet<string> = new Set([
  "RequestLimitExceeded",
  "Throttling",
  "ThrottlingException",
  "ThrottledException",
  "TooManyRequestsException",
  "RequestThrottled",
  "RequestThrottledException",
  "SlowDown",
  "PriorRequestNotComplete",
  "EC2ThrottledException",
  "BandwidthLimitExceeded"
])

const transientCodes: ReadonlySet<string> = new Set([
  "InternalError",
  "InternalFailure",
  "InternalServerError",
  "ServiceUnavailable",
  "ServiceUnavailableException",
  "Unavailable",
  "RequestTimeout",
  "RequestTimeoutException",
  "IDPCommunicationError",
  "TimeoutError",
  "NetworkingError",
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  // A resolver that could not answer for now. (ENOTFOUND, a name that does not exist, is not:
  // it is a region or an endpoint misspelt, and no wait fixes it.)
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ERR_SOCKET_CONNECTION_TIMEOUT"
])

const authCodes: ReadonlySet<string> = new Set([
  "UnauthorizedOperation",
  "AuthFailure",
  "InvalidClientTokenId",
  "SignatureDoesNotMatch",
  "IncompleteSignature",
  "MissingAuthenticationToken",
  "ExpiredToken",
  "ExpiredTokenException",
  "RequestExpired",
  "AccessDenied",
  "AccessDeniedException",
  "UnrecognizedClientException",
  "OptInRequired",
  "Blocked",
  "TokenProviderError"
])

/** Refusals that name an IAM action the identity lacks. */
const permissionCodes: ReadonlySet<string> = new Set(["UnauthorizedOperation", "AccessDenied", "AccessDeniedException"])

export const quotaCodes: ReadonlySet<string> = new Set([
  "VcpuLimitExceeded",
  "InstanceLimitExceeded",
  "MaxSpotInstanceCountExceeded",
  "ResourceLimitExceeded",
  "SecurityGroupLimitExceeded",
  "RulesPerSecurityGroupLimitExceeded",
  "KeyPairLimitExceeded",
  "SnapshotLimitExceeded",
  "AMIQuotaExceeded",
  "VolumeLimitExceeded",
  "InsufficientFreeAddressesInSubnet"
])

/** AWS (or something in its place) answered success, and the answer could not be read: cut short, or no EC2 answer. */
const unreadSuccess = (error: AwsError): boolean =>
  error.code === "DecodeError" || (error.httpStatus !== null && error.httpStatus >= 200 && error.httpStatus < 300)

/** Why an AWS error code failed a call; decides whether anyone retries it. */
export const reasonOf = (error: AwsError): ProviderErrorReason => {
  const code = error.code
  if (/^Insufficient[A-Za-z]*Capacity$/.test(code) || code === "Server.InsufficientInstanceCapacity") return "capacity"
  if (throttlingCodes.has(code)) return "throttled"
  if (transientCodes.has(code)) return "transient"
  if (authCodes.has(code)) return "auth"
  if (quotaCodes.has(code) || (code.endsWith("LimitExceeded") && !throttlingCodes.has(code))) return "quota"
  if (code === "CredentialsProviderError" || code === "NoRegion" || code === "SdkUnavailable" || code === "ENOTFOUND") return "unavailable"
  if (code.endsWith(".NotFound") || code.endsWith("NotFound")) return "not-found"
  // A termination is the one call whose unreadable success is worth repeating: it may not have
  // taken effect, an instance left running bills, and terminating twice is harmless. Elsewhere
  // such an answer (a proxy's page, say) would only be read the same way again.
  if (unreadSuccess(error) && error.operation === "TerminateInstances") return "transient"
  if (code === "DecodeError") return "internal"
  if (error.httpStatus !== null && error.httpStatus >= 500) return "transient"
  if (error.httpStatus !== null && error.httpStatus >= 400) return "invalid-request"
  return "internal"
}

/**
 * Whether a failed call may still have done its work: the request may have reached AWS and
 * only the answer was lost (a 5xx, a dropped connection, a time-out), or AWS answered success
 * and the answer could not be read (a 2xx cut short, an answer that does not decode).
 */
export const outcomeUnknown = (error: AwsError): boolean => reasonOf(error) === "transient" || unreadSuccess(error)

/** The IAM action behind an API call: what a policy must allow. */
export const iamAction = (operation: string): string =>
  operation === "GetCallerIdentity" ? "sts:GetCallerIdentity" : `ec2:${operation}`

/** Extra IAM actions a call needs besides its own (tags written at creation need `CreateTags`). */
const companionActions: Readonly<Record<string, ReadonlyArray<string>>> = {
  RunInstances: ["ec2:CreateTags"],
  CreateSecurityGroup: ["ec2:CreateTags"],
  CreateKeyPair: ["ec2:CreateTags"],
  CreateImage: ["ec2:CreateTags"]
}

/** AWS's messages can carry a multi-kilobyte encoded authorization blob; users need the first part. */
const shorten = (message: string): string => {
  const cut = message.replace(/\s*Encoded authorization failure message:[\s\S]*$/, "").trim()
  return cut.length > 400 ? `${cut.slice(0, 400)}…` : cut
}

export interface ErrorContext {
  /** Who made the call, e.g. `arn:aws:iam::123456789012:user/ci` or `profile "dev"`. */
  readonly identity?: string
  readonly instanceType?: string
  readonly spot?: boolean
}

const quotaAdvice = (error: AwsError, context: ErrorContext): string => {
  const region = error.region ?? "the region"
  if (error.code === "VcpuLimitExceeded" || error.code === "MaxSpotInstanceCountExceeded" || error.code === "InstanceLimitExceeded") {
    const spot = context.spot === true || error.code === "MaxSpotInstanceCountExceeded"
    const quota = spot ? "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests (L-34B43A08)" : "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances (L-1216C47A)"
    return (
      `The account's vCPU quota in ${region} is used up${context.instanceType === undefined ? "" : ` for ${context.instanceType}`}. ` +
      `Terminate instances you no longer need, or raise the quota "${quota}" (other families such as G, P, X have their own) ` +
      `in the Service Quotas console, or: aws service-quotas request-service-quota-increase --region ${region} --service-code ec2 ` +
      `--quota-code ${spot ? "L-34B43A08" : "L-1216C47A"} --desired-value <vCPUs>`
    )
  }
  return `An account limit in ${region} is reached; raise it in the Service Quotas console or free some of the resource.`
}

/**
 * With AWS_PROFILE set, the AWS SDK looks for that profile and ignores the access-key variables
 * (it warns on the console, which the provider silences: see aws-api.ts), so keys that are set
 * but unused must be named when no credentials were found.
 */
const profileOverKeys = (): string | null => {
  const profile = process.env["AWS_PROFILE"]
  if (profile === undefined || profile === "" || process.env["AWS_ACCESS_KEY_ID"] === undefined) return null
  return `AWS_PROFILE is set ("${profile}"), and the AWS SDK then ignores AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: unset AWS_PROFILE to use the keys, or fix the profile.`
}

/** Turns one failed AWS call into the provider's tagged error, with a message that says what to do. */
export const toProviderError = (error: AwsError, context: ErrorContext = {}): ProviderError => {
  const reason = reasonOf(error)
  const where = error.region === null ? "" : ` in ${error.region}`
  const said = shorten(error.message)
  let message: string
  switch (reason) {
    case "auth": {
      const who = context.identity === undefined ? "" : ` for ${context.identity}`
      if (permissionCodes.has(error.code)) {
        const actions = [iamAction(error.operation), ...(companionActions[error.operation] ?? [])]
        message =
          `AWS refused ${iamAction(error.operation)}${who}${where} (${error.code}): ${said} ` +
          `The IAM policy must allow ${actions.join(" and ")} (docs/providers/aws.md lists every action SkyREPL uses).`
      } else if (error.code === "OptInRequired") {
        message = `AWS refused ${error.operation}${who}${where} (${error.code}): ${said} Enable the region or subscribe the account to EC2 first.`
      } else {
        message =
          `AWS did not accept the credentials${who} for ${error.operation}${where} (${error.code}): ${said} ` +
          `Check the keys, or refresh them (aws sso login, aws configure).`
      }
      break
    }
    case "quota":
      message = `${error.operation}${where} hit an account limit (${error.code}): ${said} ${quotaAdvice(error, context)}`
      break
    case "capacity":
      message =
        `AWS has no capacity${context.instanceType === undefined ? "" : ` for ${context.instanceType}`}${where} right now (${error.code}): ${said} ` +
        `Try another instance type or region, or later.`
      break
    case "throttled":
      message = `AWS throttled ${error.operation}${where} (${error.code}): ${said}`
      break
    case "transient":
      message =
        error.operation === "TerminateInstances" && unreadSuccess(error)
          ? `${error.operation}${where} failed (${error.code}): ${said.replace(/\.$/, "")}; its answer could not be read, so EC2 may have ` +
            `taken the termination (terminating again is harmless)`
          : `${error.operation}${where} failed (${error.code}): ${said}`
      break
    case "unavailable":
      message =
        error.code === "CredentialsProviderError"
          ? `no AWS credentials found (environment, shared credentials and config files, SSO, instance metadata): ${said}. ` +
            (profileOverKeys() ??
              `Run aws configure or aws sso login, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.`)
          : error.code === "ENOTFOUND"
            ? `${error.operation}${where} failed: ${said}. That name does not exist: check the region` +
              (error.region === null ? "" : ` ("${error.region}")`) +
              ` and SKYREPL_AWS_ENDPOINT if set.`
            : said
      break
    default:
      message = `${error.operation}${where} failed (${error.code}): ${said}`
  }
  return new ProviderError({
    provider: PROVIDER_ID,
    operation: error.operation,
    reason,
    message,
    cause: error,
    ...(error.retried === true ? { retried: true } : {})
  })
}

/** A provider error that did not come from an AWS call (a missing region, a refused URL). */
export const providerError = (operation: string, reason: ProviderErrorReason, message: string, cause?: unknown): ProviderError =>
  new ProviderError({ provider: PROVIDER_ID, operation, reason, message, ...(cause === undefined ? {} : { cause }) })
