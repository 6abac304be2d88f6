// Terminates EC2 instances for a process that is exiting (AwsProvider's `terminateSync`).
//
// An `exit` handler can only run synchronous code, and an AWS call is asynchronous; so the
// exiting process starts this script with `spawnSync`, hands it the request on stdin (so
// credentials never appear in a command line or an environment), and waits for it to end. Plain
// JavaScript because it runs under whatever runtime the exiting process runs, and Node runs no
// TypeScript. The request is written by exit-termination.ts, which is its only caller.
//
// Exit status: 0 when EC2 accepted the termination (or there was nothing to terminate, and the
// request does not say the instance may be too new to be listed), 1 with one line on stderr
// otherwise.
import { DescribeInstancesCommand, EC2Client, TerminateInstancesCommand } from "@aws-sdk/client-ec2"
import { readFileSync } from "node:fs"

const fail = (message) => {
  process.stderr.write(`${message}\n`)
  process.exit(1)
}

const isText = (value) => typeof value === "string" && value.length > 0

/** The request, checked field by field: anything else in it is refused rather than guessed at. */
const readRequest = () => {
  let request
  try {
    request = JSON.parse(readFileSync(0, "utf8"))
  } catch (error) {
    fail(`the request on stdin is not JSON: ${error instanceof Error ? error.message : String(error)}`)
  }
  if (typeof request !== "object" || request === null) fail("the request on stdin is not an object")
  const { region, endpoint, profile, credentials, ids, searchByName, name, managedTag, mayBeInvisible, giveUpAt } = request
  if (!isText(region)) fail("the request names no region")
  if (!Array.isArray(ids) || !ids.every(isText)) fail("the request's ids are not a list of instance ids")
  if (typeof searchByName !== "boolean") fail("the request does not say whether to search by name")
  if (searchByName && !(isText(name) && isText(managedTag))) fail("the request asks for a search by name but names no name or tag")
  if (!searchByName && ids.length === 0) fail("the request names no instance")
  if (typeof mayBeInvisible !== "boolean") fail("the request does not say whether the instance may not be listed yet")
  if (typeof giveUpAt !== "number" || !Number.isFinite(giveUpAt)) fail("the request's giveUpAt is not a time")
  if (endpoint !== null && !isText(endpoint)) fail("the request's endpoint is not a URL")
  if (profile !== null && !isText(profile)) fail("the request's profile is not a name")
  if (credentials !== null && !(typeof credentials === "object" && isText(credentials.accessKeyId) && isText(credentials.secretAccessKey))) {
    fail("the request's credentials lack an access key id or a secret")
  }
  return { region, endpoint, profile, credentials, ids, searchByName, name, managedTag, mayBeInvisible, giveUpAt }
}

const request = readRequest()
const client = new EC2Client({
  region: request.region,
  // One attempt per call: this script tries again itself, until the caller's time is nearly up
  // (giveUpAt); the layers after this one (the agent's dead-man switch, the next process's
  // reaper) cover what it could not end.
  maxAttempts: 1,
  ...(request.endpoint === null ? {} : { endpoint: request.endpoint }),
  ...(request.profile === null ? {} : { profile: request.profile }),
  ...(request.credentials === null ? {} : { credentials: request.credentials })
})

const isNotFound = (error) => typeof error === "object" && error !== null && error.name === "InvalidInstanceID.NotFound"

/** Live instances carrying the name and the managed tag. */
const named = async () => {
  const found = await client.send(
    new DescribeInstancesCommand({
      Filters: [
        { Name: "tag:Name", Values: [request.name] },
        { Name: `tag:${request.managedTag}`, Values: ["true"] },
        { Name: "instance-state-name", Values: ["pending", "running", "stopping", "stopped"] }
      ]
    })
  )
  return (found.Reservations ?? []).flatMap((r) => (r.Instances ?? []).map((i) => i.InstanceId)).filter(isText)
}

/**
 * Terminates `ids` and returns those EC2 does not know. EC2 refuses a whole TerminateInstances
 * that names one id it does not know (InvalidInstanceID.NotFound); then each id goes on its own,
 * or a recorded id long gone would keep a live twin found by name from being terminated.
 */
const terminate = async (ids) => {
  if (ids.length === 0) return []
  try {
    const answer = await client.send(new TerminateInstancesCommand({ InstanceIds: ids }))
    // An answer cut short still parses, to less: one that does not name every instance says
    // nothing of whether the termination was taken, so it counts as a failed try.
    const named = new Set((answer.TerminatingInstances ?? []).map((i) => i.InstanceId))
    if (!ids.every((id) => named.has(id))) {
      throw Object.assign(new Error("its answer does not name every instance asked about (cut short?)"), { name: "UnreadableAnswer" })
    }
    return []
  } catch (error) {
    if (!isNotFound(error)) throw error
    if (ids.length === 1) return ids
  }
  const unknown = []
  for (const id of ids) unknown.push(...(await terminate([id])))
  return unknown
}

// Between looks while the instance may not be listed yet, and between tries after a failure.
const RETRY_PAUSE_MS = 250

const throttlingCodes = new Set(["RequestLimitExceeded", "Throttling", "ThrottlingException", "RequestThrottled"])

/**
 * Whether trying again may go otherwise: anything but AWS refusing the request itself (bad
 * credentials, no permission, a malformed parameter), throttling excepted. A 5xx, a dropped
 * connection, a time-out and an answer that could not be read (the termination may not have
 * been taken) are all worth another try while there is time.
 */
const worthRetrying = (error) => {
  if (typeof error !== "object" || error === null) return true
  return error.$fault !== "client" || throttlingCodes.has(error.name)
}

const describe = (error) => {
  const code = typeof error === "object" && error !== null && "name" in error ? `${String(error.name)}: ` : ""
  return `${code}${error instanceof Error ? error.message : String(error)}`
}

const pause = () => new Promise((resolve) => setTimeout(resolve, RETRY_PAUSE_MS))

// Failed tries before giving up even with time left: an endpoint that refuses every connection
// would otherwise hold the exiting process for all of its time.
const MAX_FAILURES = 5
let failures = 0

for (;;) {
  let terminated
  try {
    // The id may not be all (no answer from RunInstances yet, or an answer lost and retried):
    // whatever carries the name too.
    const ids = [...new Set([...request.ids, ...(request.searchByName ? await named() : [])])]
    const unknown = await terminate(ids)
    terminated = ids.filter((id) => !unknown.includes(id))
  } catch (error) {
    // One failed call is not the end while time is left: the caller bounds this process, and
    // what it cannot end is left to the agent's dead-man switch, later.
    failures += 1
    if (!worthRetrying(error) || failures >= MAX_FAILURES || Date.now() + RETRY_PAUSE_MS >= request.giveUpAt) fail(describe(error))
    await pause()
    continue
  }
  // Nothing found may only mean "not yet" for an instance just created (EC2's lists lag behind
  // RunInstances): taking that for gone would leak it, so this looks again while it may.
  if (terminated.length > 0 || !request.mayBeInvisible) {
    process.stdout.write(`${JSON.stringify({ terminated })}\n`)
    process.exit(0)
  }
  if (Date.now() + RETRY_PAUSE_MS >= request.giveUpAt) fail(`${request.name} was just created and EC2 does not list it yet`)
  await pause()
}
