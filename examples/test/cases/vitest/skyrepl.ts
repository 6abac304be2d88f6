import { createSkyReplTest } from "@skyrepl/core/vitest"
import { engine } from "../engine.ts"

export const test = createSkyReplTest(engine)
