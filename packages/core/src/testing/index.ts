/** `@skyrepl/core/testing`: the contract suites every provider and store package runs. */
export * from "./provider-suite.ts"
export * from "./store-suite.ts"
