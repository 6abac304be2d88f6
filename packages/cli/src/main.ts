import { Builtins, Cli } from "clipanion"
import { SkyReplCommand } from "./base-command.ts"
import { AllocationListCommand } from "./commands/allocation/list.ts"
import { InstanceListCommand } from "./commands/instance/list.ts"
import { OrphansCommand } from "./commands/orphans.ts"
import { RunCommand } from "./commands/run.ts"
import { RunAttachCommand } from "./commands/run/attach.ts"
import { RunCancelCommand } from "./commands/run/cancel.ts"
import { RunListCommand } from "./commands/run/list.ts"
import { SnapshotCreateCommand } from "./commands/snapshot/create.ts"
import { SnapshotDeleteCommand } from "./commands/snapshot/delete.ts"
import { SnapshotListCommand } from "./commands/snapshot/list.ts"
import { useColor } from "./format.ts"
import { VERSION } from "./version.ts"

/** Bad usage: one line naming the problem, exit 2, as POSIX utilities do. */
const USAGE = 2

export const makeCli = (): Cli => {
  const cli = new Cli({ binaryName: "repl", binaryLabel: "SkyREPL", binaryVersion: VERSION, enableColors: useColor(process.stdout) })
  cli.register(Builtins.HelpCommand)
  cli.register(Builtins.VersionCommand)
  for (const command of [RunCommand, RunListCommand, RunAttachCommand, RunCancelCommand, InstanceListCommand, AllocationListCommand, OrphansCommand, SnapshotCreateCommand, SnapshotListCommand, SnapshotDeleteCommand]) {
    cli.register(command)
  }
  return cli
}

export const main = async (argv: ReadonlyArray<string>): Promise<number> => {
  const cli = makeCli()
  let command
  try {
    command = cli.process([...argv], Cli.defaultContext)
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    // clipanion's parse errors span several lines (candidates, usage); the first says what is wrong.
    const first = message.split("\n").find((l) => l.trim() !== "") ?? "invalid usage"
    process.stderr.write(`repl: ${first.trim()} (see 'repl --help')\n`)
    return USAGE
  }
  if (!(command instanceof SkyReplCommand)) return cli.run(command, Cli.defaultContext)
  if (command.help) {
    process.stdout.write(cli.usage(command, { detailed: true, colored: useColor(process.stdout) }))
    return 0
  }
  try {
    return await command.validateAndExecute()
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    process.stderr.write(`repl: ${message.split("\n")[0]}\n`)
    return USAGE
  }
}
