// The docs against the code: every CLI command and flag is in cli.md, every SKYREPL_* variable
// the code reads is in configuration.md, every relative link resolves, and every example has a
// README and is run by the suite.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import { dirname, join, relative } from "node:path"
import { describe, expect, it } from "vitest"
import { RepeatedFlag } from "../packages/cli/src/errors.ts"
import { makeCli } from "../packages/cli/src/main.ts"

const root = join(import.meta.dirname, "..")
const read = (path: string) => readFileSync(join(root, path), "utf8")

/** Build output and installed packages: not sources, not pages. */
const skipped = new Set(["node_modules", "dist", join("docs", "api")])

/** Files under `dir` (relative to the root) whose names pass `keep`, skipping build output. */
const filesUnder = (dir: string, keep: (name: string) => boolean): ReadonlyArray<string> => {
  const found: Array<string> = []
  const walk = (path: string) => {
    for (const entry of readdirSync(join(root, path), { withFileTypes: true })) {
      const child = join(path, entry.name)
      if (entry.isDirectory()) {
        if (!skipped.has(entry.name) && !skipped.has(child)) walk(child)
      } else if (keep(entry.name)) found.push(child)
    }
  }
  if (existsSync(join(root, dir))) walk(dir)
  return found
}

/** `### \`repl run list\`` sections of cli.md, by command path. */
const cliSections = (): ReadonlyMap<string, string> => {
  const sections = new Map<string, string>()
  const parts = read("docs/cli.md").split(/^(?=#{2,3} )/m)
  for (const part of parts) {
    const heading = /^### `(repl[^`]*)`/.exec(part)
    if (heading?.[1] !== undefined) sections.set(heading[1], part)
  }
  return sections
}

describe("docs/cli.md", () => {
  const definitions = makeCli().definitions()

  it("has a section for every command the CLI registers, and for no other", () => {
    expect([...cliSections().keys()].sort()).toEqual(definitions.map((d) => d.path).sort())
  })

  it.each(definitions.map((d) => [d.path, d] as const))("%s: documents every flag", (path, definition) => {
    const section = cliSections().get(path) ?? ""
    for (const option of definition.options) {
      for (const name of option.nameSet) expect(section, `${path} ${name}`).toContain(`\`${name}\``)
    }
  })

  it.each(definitions.map((d) => [d.path, d] as const))("%s: a flag cli.md calls repeatable takes each value, and every other flag with a value refuses a second", (path, definition) => {
    const section = cliSections().get(path) ?? ""
    const cli = makeCli()
    const withValue = definition.options.filter((o) => o.definition.endsWith(" <value>"))
    // The words that make the command whole besides the flag tried: its arguments and required flags.
    const operands = definition.usage.split(" ").filter((word) => /^<[^-]/.test(word)).map(() => "x")
    for (const option of withValue) {
      // The flag's own row: its first cell names it (another row's text may mention it).
      const row = section.split("\n").find((line) => option.nameSet.every((name) => (line.split("|")[1] ?? "").includes(`\`${name}\``))) ?? ""
      expect(row, `${path} ${option.nameSet.join(",")}`).not.toBe("")
      const required = withValue.filter((o) => o.required && o !== option).flatMap((o) => [o.nameSet[0]!, "x"])
      const name = option.nameSet[0]!
      const words = [...path.split(" ").slice(1), ...operands, ...required, name, "a", `${name}=b`]
      const refused = (() => {
        try {
          cli.process(words)
          return false
        } catch (error) {
          if (error instanceof RepeatedFlag) return true
          throw error
        }
      })()
      expect({ flag: `${path} ${name}`, refused }).toEqual({ flag: `${path} ${name}`, refused: !/repeat/i.test(row) })
    }
  })
})

/**
 * A `SKYREPL_*` name in code, not followed by more of a name: this skips prefixes that code
 * completes at run time (`SKYREPL_AGENT_${hash}`, "SKYREPL_ORBSTACK_*" in a message).
 */
const variablePattern = /\bSKYREPL_[A-Z0-9]+(?:_[A-Z0-9]+)*\b(?![_$*{])/g

/** Names that look like variables and are not: the delimiter of a shell here-document. */
const notVariables = new Set(["SKYREPL_AGENT_SOURCE"])

describe("docs/configuration.md", () => {
  it("lists every SKYREPL_* variable the code reads", () => {
    const sources = [
      ...filesUnder("packages", (name) => name.endsWith(".ts") && !name.endsWith(".test.ts")).filter((f) => f.split("/")[2] === "src"),
      ...filesUnder("packages/cli/bin", () => true),
      ...filesUnder("agent", (name) => name.endsWith(".py")).filter((f) => !f.includes("/tests/")),
      ...filesUnder("tools", (name) => name.endsWith(".ts") && !name.endsWith(".test.ts"))
    ]
    const used = new Map<string, string>()
    for (const file of sources) {
      for (const match of read(file).matchAll(variablePattern)) {
        if (!notVariables.has(match[0]) && !used.has(match[0])) used.set(match[0], file)
      }
    }
    expect(used.size).toBeGreaterThan(10)
    const documented = read("docs/configuration.md")
    const missing = [...used].filter(([name]) => !documented.includes(`\`${name}\``)).map(([name, file]) => `${name} (read in ${file})`)
    expect(missing).toEqual([])
  })
})

describe("links", () => {
  const pages = ["README.md", ...filesUnder("docs", (name) => name.endsWith(".md")), ...filesUnder("examples", (name) => name === "README.md")]

  it.each(pages)("%s: every relative link resolves", (page) => {
    const text = read(page)
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (target === undefined || /^[a-z]+:/i.test(target) || target.startsWith("#")) continue
      const path = join(root, dirname(page), target.split("#")[0] ?? "")
      expect(existsSync(path), `${page} links to ${relative(root, path)}`).toBe(true)
    }
  })

  it("the README links every page in docs/", () => {
    const readme = read("README.md")
    for (const page of filesUnder("docs", (name) => name.endsWith(".md"))) {
      if (page.startsWith("docs/providers/")) continue
      expect(readme, page).toContain(`](${page})`)
    }
  })
})

describe("examples", () => {
  const examples = readdirSync(join(root, "examples")).filter(
    (name) => name !== "test" && statSync(join(root, "examples", name)).isDirectory()
  )

  it("are the six the docs promise", () => {
    expect(examples.sort()).toEqual(["bun-test", "effect", "jest", "notebook", "promise", "vitest"])
  })

  it.each(examples)("examples/%s has a README with the lines to run it and is run by the suite", (example) => {
    expect(read(`examples/${example}/README.md`)).toMatch(/```sh\n/)
    const suite = filesUnder("examples/test", (name) => name.endsWith(".test.ts")).map(read).join("\n")
    expect(suite).toContain(`examples/${example}`)
  })
})
