import { readFileSync, readlinkSync } from "node:fs"
import { hostname } from "node:os"

const read = (read: () => string): string | null => {
  try {
    return read().trim()
  } catch {
    return null
  }
}

/**
 * Where a controller's pid can be checked: its host name, and on Linux the boot and the pid
 * namespace it runs in. The host name alone is not enough: a controller in a container that
 * shares the state home and the host name (`docker run --network host`, a bind-mounted
 * `~/.repl`), or on another machine of the same name sharing the home, has pids this process
 * cannot see, and taking a pid that is not here for a process that is gone would reap its live
 * instances. Two controllers whose machines differ wait for the lease, as they do across hosts.
 */
export const machineName = (): string => {
  const boot = read(() => readFileSync("/proc/sys/kernel/random/boot_id", "utf8"))
  const pidNamespace = read(() => readlinkSync("/proc/self/ns/pid"))
  return boot === null || pidNamespace === null ? hostname() : `${hostname()} (boot ${boot}, ${pidNamespace})`
}
