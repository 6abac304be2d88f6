// `npm run aws:emulator [-- --port N] [--regions us-east-1,eu-west-1]`: moto on loopback plus the
// boot harness, for trying `repl run --provider aws` without an AWS account. Prints the `export`
// lines to use in another shell, then runs until Ctrl-C.
import { Cause, Deferred, Effect, Exit, Fiber, FiberId, Option } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startBootHarness } from "./harness.ts"
import { EmulatorError, motoCredentials, startMoto } from "./moto.ts"

const usage = "usage: npm run aws:emulator [-- --port PORT] [--regions REGION[,REGION…]]"

const parseArgs = (argv: ReadonlyArray<string>): { readonly port?: number; readonly regions: ReadonlyArray<string> } | string => {
  let port: number | undefined
  let regions = [process.env["AWS_REGION"] ?? process.env["AWS_DEFAULT_REGION"] ?? "us-east-1"]
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]
    const value = argv[i + 1]
    if (flag === "--port" && value !== undefined && /^[0-9]+$/.test(value) && Number(value) > 0 && Number(value) < 65536) {
      port = Number(value)
      i++
    } else if (flag === "--regions" && value !== undefined && /^[a-z0-9-]+(,[a-z0-9-]+)*$/.test(value)) {
      regions = value.split(",")
      i++
    } else if (flag === "--help" || flag === "-h") {
      return usage
    } else {
      return `unknown or malformed argument ${flag ?? ""}\n${usage}`
    }
  }
  return port === undefined ? { regions } : { port, regions }
}

const parsed = parseArgs(process.argv.slice(2))
if (typeof parsed === "string") {
  process.stderr.write(`${parsed}\n`)
  process.exit(parsed === usage ? 0 : 2)
}

const workDir = mkdtempSync(join(tmpdir(), "skyrepl-aws-emulator-"))
const stop = Deferred.unsafeMake<void>(FiberId.none)

const program = Effect.scoped(
  Effect.gen(function* () {
    const moto = yield* startMoto(parsed.port === undefined ? {} : { port: parsed.port })
    yield* startBootHarness({
      endpoint: moto.url,
      regions: parsed.regions,
      workDir,
      log: (line) => process.stderr.write(`aws-emulator: ${line}\n`)
    })
    const [region, ...more] = parsed.regions
    process.stdout.write(
      [
        `# moto ${moto.url} (pid ${moto.pid}); boot harness watching ${parsed.regions.join(", ")}; sandboxes in ${workDir}`,
        "# In another shell:",
        `export SKYREPL_AWS_ENDPOINT=${moto.url}`,
        `export AWS_ACCESS_KEY_ID=${motoCredentials.accessKeyId}`,
        `export AWS_SECRET_ACCESS_KEY=${motoCredentials.secretAccessKey}`,
        `export AWS_REGION=${region ?? "us-east-1"}`,
        ...(more.length > 0 ? [`export SKYREPL_AWS_REGIONS=${parsed.regions.join(",")}`] : []),
        // A profile would make the SDK skip the environment's keys and sign for a real account.
        "unset AWS_PROFILE AWS_SESSION_TOKEN",
        "# then: npx repl run --provider aws -c 'echo hello'",
        ""
      ].join("\n")
    )
    yield* Deferred.await(stop)
  })
)

const fiber = Effect.runFork(program)
const shutdown = () => {
  Effect.runFork(Deferred.succeed(stop, undefined))
}
process.once("SIGINT", shutdown)
process.once("SIGTERM", shutdown)

Effect.runPromise(Fiber.await(fiber)).then((exit) => {
  rmSync(workDir, { recursive: true, force: true })
  if (Exit.isFailure(exit)) {
    const failure = Cause.failureOption(exit.cause)
    const message = Option.isSome(failure) && failure.value instanceof EmulatorError ? failure.value.message : Cause.pretty(exit.cause)
    process.stderr.write(`aws-emulator: ${message}\n`)
    process.exit(1)
  }
  process.stderr.write("aws-emulator: stopped; every sandbox ended and moto is gone\n")
  process.exit(0)
})
