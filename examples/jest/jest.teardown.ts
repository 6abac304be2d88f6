// Runs once after every test file, in Jest's main process: ends what a worker that crashed or
// was force-killed left running, and what a file run in band did not get to end.
import { skyreplGlobalTeardown } from "@skyrepl/core/jest"
import { engine } from "./skyrepl.ts"

export default skyreplGlobalTeardown(engine)
