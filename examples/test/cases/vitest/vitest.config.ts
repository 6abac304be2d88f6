import { defineConfig } from "vitest/config"

// Cases for examples/test, not tests of their own: some fail on purpose, one never ends.
export default defineConfig({
  test: {
    include: ["*.case.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
