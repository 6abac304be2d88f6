// Cases for examples/test, not tests of their own: some fail on purpose, one never ends. The
// same ESM set-up as examples/jest.
/** @type {import("jest").Config} */
export default {
  testEnvironment: "node",
  // Jest 30 "soft-deletes" what a finished file left on the global scope, which includes Effect's
  // runtime state; an engine still running after its file (a client that was never disposed)
  // then fails inside Jest's wrapper (unbounded recursion) before the global teardown can end
  // its instances. Off, it keeps working until then.
  testEnvironmentOptions: { globalsCleanup: "off" },
  extensionsToTreatAsEsm: [".ts"],
  transform: {
    "^.+\\.ts$": ["@swc/jest", { jsc: { parser: { syntax: "typescript" }, target: "es2022" } }]
  },
  testMatch: ["<rootDir>/*.case.ts"],
  globalTeardown: "<rootDir>/teardown.ts",
  testTimeout: 30_000
}
