import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["*.test.ts"],
    // A launch starts a sandbox and an agent: well under a second here, but leave room for a
    // loaded machine. Fixture teardown waits until each instance is confirmed gone.
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
