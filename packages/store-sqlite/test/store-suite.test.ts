import { storeSuite } from "@skyrepl/core/testing"
import { SqliteStore } from "@skyrepl/store-sqlite"
import { afterAll } from "@effect/vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

const root = mkdtempSync(join(tmpdir(), "skyrepl-store-suite-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))

// One directory per store: the control id copy lives beside the database file.
storeSuite("SqliteStore", () => SqliteStore.layer({ filename: join(mkdtempSync(join(root, "home-")), "state.db") }))
