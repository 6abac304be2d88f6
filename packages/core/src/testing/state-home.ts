import { rmSync } from "node:fs"

/**
 * Removes a state home a test made, whole. The local provider compiles its agent copy in a
 * detached process that can still be writing into the home when a short test ends; a removal
 * that loses that race finds a directory refilled under it (ENOTEMPTY), so it is tried again
 * for up to two seconds (a compile takes well under one). The loop does not rely on
 * `maxRetries` alone, which not every runtime's rmSync honours.
 */
export const removeStateHome = (home: string): void => {
  for (let attempt = 1; ; attempt++) {
    try {
      rmSync(home, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 })
      return
    } catch (error) {
      const code = typeof error === "object" && error !== null && "code" in error ? error.code : undefined
      if (code !== "ENOTEMPTY" || attempt >= 40) throw error
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50)
    }
  }
}
