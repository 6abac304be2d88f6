import { agentArguments, type Bootstrap } from "@skyrepl/core"
import { createHash } from "node:crypto"
import { gzipSync } from "node:zlib"
import { compactAgent } from "./compact-python.ts"

/** EC2 refuses user-data above 16 KB, counted before base64. */
export const USER_DATA_LIMIT = 16 * 1024

/** Where the bootstrap puts the agent, its work directory and its logs on the instance. */
export const AGENT_DIR = "/opt/skyrepl"

/** POSIX single quotes: nothing inside is special to the shell. */
export const shellQuote = (text: string): string => `'${text.replace(/'/g, `'"'"'`)}'`


export interface UserDataInput {
  readonly name: string
  readonly bootstrap: Bootstrap
  /** The agent's source, shipped inside the user-data. */
  readonly agentSource: string
  /** The instance powers itself off after this long, whatever else happens. */
  readonly maxLifetimeSeconds: number
}

export interface UserData {
  readonly script: string
  /** What EC2 gets: the gzipped script (cloud-init recognises gzip), base64-encoded. */
  readonly base64: string
  /** Size that counts against the 16 KB limit. */
  readonly bytes: number
}

/**
 * A delimiter for the here-document that cannot occur in the agent: it carries a hash of the
 * agent itself, so the agent would have to contain its own hash.
 */
const heredocDelimiter = (source: string): string =>
  `SKYREPL_AGENT_${createHash("sha256").update(source).digest("hex").slice(0, 16).toUpperCase()}`

type Gzip = (data: Buffer) => Uint8Array

/**
 * The gzip for the part of the user-data that names the instance, made on every launch. On Bun,
 * node:zlib's gzipSync builds a whole stream per call, which cost about 0.25 ms of a launch
 * against moto; Bun's own gzipSync is a plain function call. Bun is reached through globalThis:
 * the package compiles without Bun's types. Any gzip will do here: cloud-init inflates whatever
 * it is given.
 */
const fastGzip = ((): Gzip => {
  const bun: unknown = Reflect.get(globalThis, "Bun")
  const gzip: unknown = typeof bun === "object" && bun !== null ? Reflect.get(bun, "gzipSync") : undefined
  const portable: Gzip = (data) => gzipSync(data, { level: 9 })
  if (typeof gzip !== "function") return portable
  return (data) => {
    const out: unknown = Reflect.apply(gzip, bun, [data, { level: 9 }])
    return out instanceof Uint8Array ? out : portable(data)
  }
})()

interface InstallStep {
  readonly script: string
  readonly gzipped: Uint8Array
}

/** The agent's install step, gzipped: the same for every launch with the same agent. */
let installCache: { readonly source: string; readonly step: Promise<InstallStep> } | null = null

/**
 * The first part of the script, which writes the agent, and its gzip member: the same for every
 * launch with the same agent, so it is made once per process and agent (launches that ask at
 * once share the one being made). Compressed with Zopfli, whose deflate stream any gunzip reads:
 * about 690 bytes (4.6 %) smaller than zlib's level 9, room the agent needs in EC2's 16 KB, for
 * about 0.3 s of CPU once per process.
 */
const installStep = (agentSource: string): Promise<InstallStep> => {
  if (installCache !== null && installCache.source === agentSource) return installCache.step
  const step = compressInstall(agentSource)
  installCache = { source: agentSource, step }
  // A failure is not kept: the next launch tries again.
  step.catch(() => {
    if (installCache?.step === step) installCache = null
  })
  return step
}

let zopfliModule: Promise<typeof import("@gfx/zopfli")> | null = null

/**
 * @gfx/zopfli, loaded on first use, without the process listeners its Emscripten runtime adds
 * as it loads: one calls its `abort` on any unhandled rejection, which killed a program that
 * handles those itself (exit 7), and one rethrows every uncaught exception. The compressor needs
 * neither; the program's own handling stands.
 */
const zopfli = (): Promise<typeof import("@gfx/zopfli")> => {
  zopfliModule ??= (async () => {
    const exceptions = process.listeners("uncaughtException")
    const rejections = process.listeners("unhandledRejection")
    const loaded = await import("@gfx/zopfli")
    for (const listener of process.listeners("uncaughtException")) {
      if (!exceptions.includes(listener)) process.removeListener("uncaughtException", listener)
    }
    for (const listener of process.listeners("unhandledRejection")) {
      if (!rejections.includes(listener)) process.removeListener("unhandledRejection", listener)
    }
    return loaded
  })()
  return zopfliModule
}

const compressInstall = async (agentSource: string): Promise<InstallStep> => {
  const compact = compactAgent(agentSource)
  const delimiter = heredocDelimiter(compact)
  const body = compact.endsWith("\n") ? compact : `${compact}\n`
  const script = [
    "#!/bin/sh",
    "# SkyREPL bootstrap: installs and starts the agent (docs/providers/aws.md).",
    "set -eu",
    "umask 077",
    `mkdir -p ${AGENT_DIR}/work`,
    `cat > ${AGENT_DIR}/skyrepl_agent.py <<'${delimiter}'`,
    `${body}${delimiter}`,
    ""
  ].join("\n")
  // Two iterations: more gain a few bytes for as much time again.
  const zopfliGzip = (data: Buffer) => zopfli().then(({ gzipAsync }) => gzipAsync(data, { numiterations: 2 }))
  return { script, gzipped: await smallestGzip(Buffer.from(script, "utf8"), zopfliGzip, ZOPFLI_TIME_LIMIT_MS) }
}

/** How long Zopfli may take (about 0.3 s here) before zlib's level 9 is used instead. */
const ZOPFLI_TIME_LIMIT_MS = 20_000

/**
 * `data` gzipped by Zopfli, or by zlib's level 9 when Zopfli cannot load, fails, or takes past
 * its time limit: Zopfli only saves bytes (the launch's own size check then says whether zlib's
 * fit), and a WebAssembly module that never became ready must not hold every AWS launch of the
 * process, the cached step included, for ever.
 */
export const smallestGzip = async (
  data: Buffer,
  best: (data: Buffer) => Promise<Uint8Array>,
  limitMs: number
): Promise<Uint8Array> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), limitMs)
    timer.unref?.()
  })
  const compressed = Promise.resolve().then(() => best(data))
  try {
    return (await Promise.race([compressed, late])) ?? gzipSync(data, { level: 9 })
  } catch {
    return gzipSync(data, { level: 9 })
  } finally {
    clearTimeout(timer)
    // Settled or abandoned, its outcome is not wanted any more: no unhandled rejection.
    compressed.catch(() => undefined)
  }
}

/**
 * The cloud-init user-data: a shell script that writes the agent and starts it, as root, in
 * the background so cloud-init can finish. The agent's token travels in its environment, not
 * its command line. Two guards end the instance on their own: when the agent exits for any
 * reason (it cannot be reached any more, so the VM has no purpose), and when the maximum
 * lifetime passes. Both power off, which the launch turned into termination
 * (`InstanceInitiatedShutdownBehavior=terminate`).
 *
 * The script is gzipped: cloud-init inflates gzip user-data itself. The agent (~85 KB; ~47 KB
 * as `compactAgent` ships it) and its install step take ~14.4 KB (Zopfli), the part naming the
 * instance ~0.5 KB: about 14.9 KB of the 16 KB, and a test keeps at least 800 bytes free. It is two gzip members
 * one after the other, the agent's install step (compressed once per agent) and the part that
 * names this instance; gzip defines a file of several members as their concatenation, and
 * cloud-init (Python's gzip module), gunzip and Node's zlib all read it so.
 */
export const buildUserData = async (input: UserDataInput): Promise<UserData> => {
  const { name, bootstrap, agentSource } = input
  const install = await installStep(agentSource)
  const agentArgs = agentArguments(name, bootstrap, { shutdown: "poweroff", workdir: `${AGENT_DIR}/work`, log: `${AGENT_DIR}/agent.log` })
    .map(shellQuote)
    .join(" ")
  const start = [
    `# Starts the agent as ${name}.`,
    `export SKYREPL_AGENT_TOKEN=${shellQuote(bootstrap.token)}`,
    "export SKYREPL_AGENT_ALLOW_POWEROFF=1",
    "end_instance() { poweroff || shutdown -h now; }",
    "python=$(command -v python3 || true)",
    // The guards must run to the end whatever the agent's exit status: no `set -e` in them.
    "(",
    "  set +e",
    `  if [ -n "$python" ]; then "$python" ${AGENT_DIR}/skyrepl_agent.py ${agentArgs}; else echo "skyrepl: no python3 on this image" >&2; fi`,
    "  end_instance",
    `) </dev/null >>${AGENT_DIR}/console.log 2>&1 &`,
    "unset SKYREPL_AGENT_TOKEN",
    `( set +e; sleep ${Math.max(60, Math.round(input.maxLifetimeSeconds))}; end_instance ) </dev/null >/dev/null 2>&1 &`,
    ""
  ].join("\n")
  const gzipped = Buffer.concat([install.gzipped, fastGzip(Buffer.from(start, "utf8"))])
  return { script: install.script + start, base64: gzipped.toString("base64"), bytes: gzipped.length }
}
