// Holds an instance and says so; the test that runs this case then SIGKILLs Jest.
import { test } from "@jest/globals"
import { useSkyRepl } from "@skyrepl/core/jest"
import { engine } from "../engine.ts"
import { forever, ready } from "../record.ts"

const repl = useSkyRepl(engine)

test("holds an instance until Jest is killed", async () => {
  ready((await repl.launch({ command: "exec sleep 600" })).instance.name)
  await forever()
}, 600_000)
