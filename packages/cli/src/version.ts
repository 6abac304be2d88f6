/** Kept in step with package.json by the release script's check (tested in cli.test.ts). */
export const VERSION = "0.1.0"
