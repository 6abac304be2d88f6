export * as SqliteStore from "./sqlite-store.ts"
