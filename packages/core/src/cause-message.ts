/**
 * What a caught error says, for a message or a warning built around it: `ENOTDIR: not a
 * directory, lstat '/x'`, where `String(error)` gave `Error: ENOTDIR: …`. The text is kept
 * whole (code, system call and path are what a user acts on). Duck-typed rather than
 * `instanceof Error`: an error from another realm (a worker, a test runner's sandbox) is not one.
 */
export const describeCause = (cause: unknown): string => {
  if (typeof cause === "object" && cause !== null && "message" in cause && typeof cause.message === "string") {
    if (cause.message !== "") return cause.message
    return "name" in cause && typeof cause.name === "string" && cause.name !== "" ? cause.name : "unknown error"
  }
  return String(cause)
}
