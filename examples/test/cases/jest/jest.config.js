// Cases for examples/test, not tests of their own: some fail on purpose, one never ends. The
// ESM set-up is examples/jest's own config, so the cases run exactly as a user's Jest project.
import example from "../../../jest/jest.config.js"

/** @type {import("jest").Config} */
export default {
  ...example,
  testMatch: ["<rootDir>/*.case.ts"],
  globalTeardown: "<rootDir>/teardown.ts"
}
