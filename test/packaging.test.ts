// The install against npm's install-script policy: npm 12 runs a dependency's install script
// only when the root package.json's `allowScripts` allows it, and skips the rest without
// failing the install. A new dependency with a script that matters (a native driver, a binary
// download) would then be missing on a fresh machine while every machine installed with an
// older npm works. So every package the lockfile marks as having install scripts must be
// decided in `allowScripts`, one way or the other (docs/decisions.md, "Packaging").
import { Schema } from "effect"
import { execa } from "execa"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { removeHome, tempHome } from "./support.ts"

const root = join(import.meta.dirname, "..")

const Manifest = Schema.Struct({ allowScripts: Schema.Record({ key: Schema.String, value: Schema.Boolean }) })
const Lockfile = Schema.Struct({
  packages: Schema.Record({ key: Schema.String, value: Schema.Struct({ hasInstallScript: Schema.optional(Schema.Boolean) }) })
})
const decodeManifest = Schema.decodeUnknownSync(Schema.parseJson(Manifest))
const decodeLockfile = Schema.decodeUnknownSync(Schema.parseJson(Lockfile))

/** The names of the installed packages (not workspaces) whose install scripts npm would run. */
const withInstallScripts = (): ReadonlyArray<string> => {
  const lock = decodeLockfile(readFileSync(join(root, "package-lock.json"), "utf8"))
  const names = new Set<string>()
  for (const [path, entry] of Object.entries(lock.packages)) {
    // Workspaces' own scripts always run; only dependencies under node_modules are policed.
    const at = path.lastIndexOf("node_modules/")
    if (entry.hasInstallScript === true && at >= 0) names.add(path.slice(at + "node_modules/".length))
  }
  return [...names].sort()
}

describe("install scripts", () => {
  const allowed = decodeManifest(readFileSync(join(root, "package.json"), "utf8")).allowScripts

  it("every dependency with an install script is allowed or refused in allowScripts", () => {
    const scripted = withInstallScripts()
    expect(scripted.length).toBeGreaterThan(0)
    expect(scripted.filter((name) => !(name in allowed))).toEqual([])
  })

  it("allowScripts names no package that has no install script (a stale decision)", () => {
    const scripted = new Set(withInstallScripts())
    expect(Object.keys(allowed).filter((name) => !scripted.has(name))).toEqual([])
  })

  it("the packages whose scripts build what the project runs on are allowed", () => {
    // Bun's binary (the CLI's build and the Bun half of the suite) and the store's driver on Node.
    expect(allowed["bun"]).toBe(true)
    expect(allowed["better-sqlite3"]).toBe(true)
  })
})

describe("the CLI launcher (packages/cli/bin/repl)", () => {
  const launcher = readFileSync(join(root, "packages", "cli", "bin", "repl"), "utf8")
  /** The JavaScriptCore options the launcher gives the pinned Bun, as NAME=VALUE. */
  const options = [...launcher.matchAll(/\$\{(BUN_JSC_\w+):=(\d+)\}/g)].map((m) => `${m[1]}=${m[2]}`)

  it("sets JavaScriptCore options that the Bun this package pins knows (Bun refuses to start on one it does not)", async () => {
    expect(options.length).toBeGreaterThan(0)
    const env = Object.fromEntries(options.map((o) => o.split("=") as [string, string]))
    const result = await execa(join(root, "node_modules", ".bin", "bun"), ["-e", "process.stdout.write('started')"], { env, reject: false })
    expect([result.exitCode, result.stderr, result.stdout]).toEqual([0, "", "started"])
  })

  it("gives them to the command it starts, and leaves a value the caller set", async () => {
    expect(options.length).toBeGreaterThan(0)
    const home = tempHome()
    try {
      const repl = join(root, "node_modules", ".bin", "repl")
      // Bun refuses the caller's value, which shows it reached Bun unchanged.
      const refused = await execa(repl, ["run", "list"], { env: { SKYREPL_HOME: home, BUN_JSC_thresholdForJITSoon: "not-a-number" }, reject: false })
      expect(refused.exitCode).not.toBe(0)
      expect(refused.stderr).toContain("BUN_JSC_thresholdForJITSoon=not-a-number")
      // Without one, the process the launcher became (exec keeps its pid) holds the launcher's.
      // Whatever the test's own environment holds of these is left out, so the launcher's show.
      const unset = Object.fromEntries(options.map((o) => [o.split("=")[0]!, undefined]))
      const running = execa(repl, ["run", "-c", "sleep 60"], { env: { ...unset, SKYREPL_HOME: home }, reject: false })
      let environ = ""
      const deadline = Date.now() + 15_000
      while (!environ.includes("BUN_JSC_") && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50))
        environ = readFileSync(`/proc/${running.pid}/environ`, "utf8")
      }
      // Interrupted once the run is going, so that it ends as every interrupted run does.
      while (Date.now() < deadline) {
        const listed = await execa(repl, ["run", "list", "--json", "--state", "running"], { env: { SKYREPL_HOME: home } })
        if ((JSON.parse(listed.stdout) as ReadonlyArray<unknown>).length === 1) break
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      running.kill("SIGINT")
      expect((await running).exitCode).toBe(130)
      expect(environ.split("\0").filter((v) => v.startsWith("BUN_JSC_")).sort()).toEqual([...options].sort())
    } finally {
      removeHome(home)
    }
  })
})
