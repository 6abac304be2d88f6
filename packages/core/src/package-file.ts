import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

/**
 * A file a SkyREPL package ships beside its sources: found relative to the calling module
 * (`moduleUrl`, its `import.meta.url`), or — when that module was bundled into another file (the
 * CLI bundle) — relative to where `packageName` is installed. Null when neither has it.
 */
export const shippedFile = (moduleUrl: string, fromModule: string, packageName: string, fromPackage: string): string | null => {
  const beside = fileURLToPath(new URL(fromModule, moduleUrl))
  if (existsSync(beside)) return beside
  try {
    const installed = join(dirname(createRequire(moduleUrl).resolve(`${packageName}/package.json`)), fromPackage)
    if (existsSync(installed)) return installed
  } catch {
    // Not resolvable from here.
  }
  return null
}
