// The SkyREPL packages are TypeScript ES modules (`.ts` imports, `import.meta.url`), so Jest
// runs the tests as ES modules: `node --experimental-vm-modules` (see the `test` script), `.ts`
// treated as ESM, and SWC stripping the types without touching the imports.
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
  testMatch: ["<rootDir>/*.test.ts"],
  // Ends whatever a crashed or force-killed worker left running.
  globalTeardown: "./jest.teardown.ts",
  // A launch starts a sandbox and an agent: well under a second here, but leave room.
  testTimeout: 30_000
}
