// The install against npm's install-script policy: npm 12 runs a dependency's install script
// only when the root package.json's `allowScripts` allows it, and skips the rest without
// failing the install. A new dependency with a script that matters (a native driver, a binary
// download) would then be missing on a fresh machine while every machine installed with an
// older npm works. So every package the lockfile marks as having install scripts must be
// decided in `allowScripts`, one way or the other (docs/decisions.md, "Packaging").
import { Schema } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"

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
