import { skyreplGlobalTeardown } from "@skyrepl/core/jest"
import { engine } from "../engine.ts"

export default skyreplGlobalTeardown(engine)
