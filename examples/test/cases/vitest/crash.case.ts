// Holds a fixture instance and says so; the test that runs this case then SIGKILLs the runner.
import { forever, ready } from "../record.ts"
import { test } from "./skyrepl.ts"

test("holds an instance until the runner is killed", async ({ run }) => {
  ready(run.instance.name)
  await forever()
}, 600_000)
