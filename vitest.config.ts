import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts", "examples/test/*.test.ts", "docs/*.test.ts", "tools/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Sandboxes and SQLite files are real; two cores are all CI has.
    maxWorkers: 2,
    minWorkers: 1
  }
})
