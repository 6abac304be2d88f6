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
import { stderr, stdout } from "./stdio.ts"
import { VERSION } from "./version.ts"

/** Bad usage: one line naming the problem, exit 2, as POSIX utilities do. */
const USAGE = 2

const commands = [RunCommand, RunListCommand, RunAttachCommand, RunCancelCommand, InstanceListCommand, AllocationListCommand, OrphansCommand, SnapshotCreateCommand, SnapshotListCommand, SnapshotDeleteCommand] as const

export const makeCli = (): Cli => {
  const cli = new Cli({ binaryName: "repl", binaryLabel: "SkyREPL", binaryVersion: VERSION, enableColors: useColor(stdout) })
  cli.register(Builtins.HelpCommand)
  cli.register(Builtins.VersionCommand)
  for (const command of commands) cli.register(command)
  return cli
}

/**
 * The command whose path is all of `argv` but a last `-h`/`--help`. clipanion answers `repl run
 * --help` with the list of every command under `run` and a `-h=<index>` to pick one, since
 * `run` is also the start of `run list` and the others; the user asked about `repl run` itself.
 */
const helpAsked = (argv: ReadonlyArray<string>) => {
  const last = argv[argv.length - 1]
  if (last !== "-h" && last !== "--help") return undefined
  const path = argv.slice(0, -1).join(" ")
  return commands.find((command) => command.paths.some((p) => p.join(" ") === path))
}

export const main = async (argv: ReadonlyArray<string>): Promise<number> => {
  const cli = makeCli()
  const help = helpAsked(argv)
  if (help !== undefined) {
    stdout.write(cli.usage(help, { detailed: true, colored: useColor(stdout) }))
    return 0
  }
  let command
  try {
    // No stdio in the context: the CLI's commands write through ./stdio.ts, and the streams
    // are not made unless something needs them (see the build script for clipanion's side).
    command = cli.process([...argv], { env: process.env })
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    // clipanion's parse errors span several lines (candidates, usage); the first says what is wrong.
    const first = message.split("\n").find((l) => l.trim() !== "") ?? "invalid usage"
    stderr.write(`repl: ${first.trim()} (see 'repl --help')\n`)
    return USAGE
  }
  // clipanion's own commands (help, version) write to the context's streams.
  if (!(command instanceof SkyReplCommand)) return cli.run(command, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr })
  if (command.help) {
    stdout.write(cli.usage(command, { detailed: true, colored: useColor(stdout) }))
    return 0
  }
  try {
    return await command.validateAndExecute()
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    stderr.write(`repl: ${message.split("\n")[0]}\n`)
    return USAGE
  }
}
