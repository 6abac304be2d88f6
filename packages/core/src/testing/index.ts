/**
 * The contract suites every provider and store package runs.
 *
 * @module @skyrepl/core/testing
 */
export * from "./provider-suite.ts"
export * from "./records.ts"
export * from "./state-home.ts"
export * from "./store-suite.ts"
