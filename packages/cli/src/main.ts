import { Builtins, Cli } from "clipanion"
import { readFileSync } from "node:fs"
import { jsonAsked, reportFailure, SkyReplCommand } from "./base-command.ts"
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
import { RepeatedFlag } from "./errors.ts"
import { bold, useColor } from "./format.ts"
import { printAndEnd } from "./print.ts"
import { stdout } from "./stdio.ts"
import { VERSION } from "./version.ts"

/** Bad usage: one line naming the problem, exit 2, as POSIX utilities do. */
const USAGE = 2

const commands = [RunCommand, RunListCommand, RunAttachCommand, RunCancelCommand, InstanceListCommand, AllocationListCommand, OrphansCommand, SnapshotCreateCommand, SnapshotListCommand, SnapshotDeleteCommand] as const

/** An option's value as help shows it: clipanion writes `#0` (`--provider #0`). */
const VALUE = " <value>"
const valueNamed = (text: string): string => text.replace(/ #\d+(?=[\]>\s]|$)/g, VALUE)

/**
 * The words of a command's usage line that stand for its arguments (`<run-id>`, `[name]`,
 * `...`), its options (`[--limit <value>]`, `<-c,--command <value>>`, `[--json]`) left out.
 */
const argumentPlaces = (named: Definition): ReadonlyArray<string> =>
  named.usage
    .slice(named.path.length)
    .replace(/[[<]-\S*?(?: <value>)?[\]>]/g, "")
    .split(" ")
    .filter((word) => word !== "")

/**
 * clipanion's Cli, with `<value>` where clipanion's help and usage lines put `#0` for an
 * option's value. Changed where the lines are made, so the help's option list is still aligned
 * (clipanion pads the definitions it gets from here) and every usage line says the same.
 */
class ReplCli extends Cli {
  protected override getUsageByIndex(...args: Parameters<Cli["getUsageByIndex"]>): ReturnType<Cli["getUsageByIndex"]> {
    const { usage, options } = super.getUsageByIndex(...args)
    return { usage: valueNamed(usage), options: options.map((option) => ({ ...option, definition: valueNamed(option.definition) })) }
  }
}

export const makeCli = (): Cli => {
  const cli = new ReplCli({ binaryName: "repl", binaryLabel: "SkyREPL", binaryVersion: VERSION, enableColors: useColor(stdout) })
  cli.register(Builtins.HelpCommand)
  cli.register(Builtins.VersionCommand)
  for (const command of commands) cli.register(command)
  return cli
}

type Registered = (typeof commands)[number]

/**
 * What help `argv` asks for: a `-h`/`--help` anywhere before `--` (after it, it is an argument)
 * asks for the help of the command the words before the flags name, whatever else is wrong with
 * them (an unknown flag, a missing or extra argument), as `npm <command> … --help` does; clipanion
 * read the words in order and refused the first it did not know, so `repl run list --bogus
 * --help` was a usage error. clipanion answers `repl run --help` with the list of every command
 * under `run` and a `-h=<index>` to pick one, since `run` is also the start of `run list` and the
 * others: the user asked about `repl run` itself. For a path that is only a group (`repl snapshot
 * --help`), the commands under it are what there is to say.
 */
const helpAsked = (
  cli: Cli,
  argv: ReadonlyArray<string>
): { readonly command: Registered } | { readonly group: string; readonly under: ReadonlyArray<Registered> } | { readonly top: true } | undefined => {
  const end = argv.indexOf("--")
  const options = end === -1 ? argv : argv.slice(0, end)
  if (!options.some((word) => helpFlags.includes(word))) return undefined
  const words = options.filter((word) => !helpFlags.includes(word))
  const named = commandNamed(cli, words)
  if (named !== undefined) {
    const command = commands.find((c) => c.paths.some((p) => ["repl", ...p].join(" ") === named.path))
    if (command === undefined) return undefined
    // A word after a path that other commands continue (`repl run lis --help`) more likely
    // misspells one of them than is an argument: the usage error says which.
    const next = words[named.path.split(" ").length - 1]
    const continued = cli.definitions().some((d) => d.path.startsWith(`${named.path} `))
    return continued && next !== undefined && !next.startsWith("-") ? undefined : { command }
  }
  const firstFlag = words.findIndex((w) => w.startsWith("-") && w !== "-")
  const path = firstFlag === -1 ? words : words.slice(0, firstFlag)
  // No command named at all (`repl --bogus --help`): the top level's help.
  if (path.length === 0) return { top: true }
  const under = commands.filter((c) => c.paths.some((p) => p.length > path.length && path.every((w, i) => p[i] === w)))
  return under.length === 0 ? undefined : { group: path.join(" "), under }
}

/** `repl GROUP --help`: each command under the group, with its line, as `repl --help` lists them. */
const groupUsage = (cli: Cli, group: string, under: ReadonlyArray<Registered>, color: boolean): string => {
  const entries = under
    .map((command) => ({ usage: cli.usage(command, { colored: false, prefix: "" }).trim(), description: command.usage.description?.trim() ?? "" }))
    .sort((a, b) => a.usage.localeCompare(b.usage, "en"))
    .map(({ usage, description }) => `  ${bold(usage, color)}\n    ${description}\n`)
  return `${bold(`Commands under repl ${group}`, color)}\n\n${entries.join("\n")}\nSee 'repl ${group} <command> --help' for one in detail.\n`
}

/**
 * Edits (a character inserted, removed, changed, or two neighbours swapped) between `a` and `b`:
 * the optimal string alignment distance, enough for a typed command name against a dozen.
 */
const editDistance = (a: string, b: string): number => {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)))
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = rows[i]!
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      row[j] = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, rows[i - 2]![j - 2]! + 1)
    }
  }
  return rows[a.length]![b.length]!
}

/**
 * The usage error for words where a command's name belongs that spell none but come close to
 * one (`repl run lis`), naming it; null when they spell a command (what follows it is then its
 * flags and arguments, said by the usual errors), follow a command that takes arguments
 * (`repl run attach lis`: a run id), or come close to no command, or to two alike. Close is two
 * edits at most, and at most a third of the name, so that a short word is not taken for another.
 */
const nearMiss = (cli: Cli, argv: ReadonlyArray<string>): string | null => {
  const firstFlag = argv.findIndex((w) => w.startsWith("-") && w !== "-")
  const words = firstFlag === -1 ? argv : argv.slice(0, firstFlag)
  if (words.length === 0) return null
  const paths = cli.definitions().map((definition) => ({ definition, path: definition.path.split(" ").slice(1) }))
  const spelled = ({ path }: { readonly path: ReadonlyArray<string> }) => path.length <= words.length && path.every((w, i) => words[i] === w)
  if (paths.some((p) => spelled(p) && (p.path.length === words.length || argumentPlaces(p.definition).length > 0))) return null
  const typed = words.join(" ")
  // A path shorter than the words is compared with as many of them when its command takes
  // arguments (`repl snapshot craete RUN-ID`).
  const scored = paths
    .filter(({ definition, path }) => path.length === words.length || (path.length < words.length && argumentPlaces(definition).length > 0))
    .map(({ path }) => ({ name: path.join(" "), distance: editDistance(words.slice(0, path.length).join(" "), path.join(" ")) }))
    .filter(({ name, distance }) => distance <= 2 && distance * 3 <= name.length)
    .sort((a, b) => a.distance - b.distance)
  const best = scored[0]
  if (best === undefined || scored[1]?.distance === best.distance) return null
  return `unknown command ${JSON.stringify(typed)}; did you mean 'repl ${best.name}'? (see 'repl --help')`
}

/**
 * What to say when no command matched `argv`. clipanion says "Command not found" both for a
 * path no command has and for a command missing a required option (`repl run` without `-c`),
 * and "Not enough positional arguments" for a command missing one (`repl run attach` without
 * its run id); for the latter two this names the command and what it lacks.
 */
const noCommandMatched = (cli: Cli, argv: ReadonlyArray<string>): string => {
  const named = commandNamed(cli, argv)
  if (named === undefined) {
    // A lone "-" is a word like any other here (stdin's usual name), so it is named as one.
    const words = argv.filter((a) => !a.startsWith("-") || a === "-")
    const under = cli.definitions().filter((d) => words.length > 0 && d.path.startsWith(`repl ${words.join(" ")} `))
    if (under.length > 0) return `"${words.join(" ")}" needs a command after it: ${under.map((d) => d.path).join(", ")} (see 'repl --help')`
    return `unknown command${words.length === 0 ? "" : ` "${words.join(" ")}"`} (see 'repl --help')`
  }
  const given = (name: string) => argv.some((a) => a === name || a.startsWith(`${name}=`) || (/^-[^-]$/.test(name) && a.startsWith(name)))
  const options = named.options ?? []
  const missingOptions = options.filter((o) => o.required && !o.nameSet.some(given)).map((o) => o.nameSet.join("/"))
  // The usage names the required arguments in order (`<run-id>`); the words given fill the first.
  const required = argumentPlaces(named).filter((word) => /^<[^>]+>$/.test(word))
  const after = argv.slice(named.path.split(" ").length - 1)
  const missing = [...missingOptions, ...required.slice(operandsOf(after, options).length)]
  if (missing.length > 0) return `missing ${missing.join(", ")} for '${named.path}' (see '${named.path} --help')`
  // clipanion matches no command at all when a flag it does not know follows one given with
  // `=` (`--provider=local --bogus`): name that flag, as when it comes first. A word after `--`
  // is an argument, and a long flag's name is never anything's value.
  const names = new Set(options.flatMap((o) => o.nameSet))
  const end = after.indexOf("--")
  const unknown = (end === -1 ? after : after.slice(0, end)).find((w) => w.startsWith("--") && !names.has(w.split("=")[0]!))
  if (unknown !== undefined) return `unknown flag ${unknown.split("=")[0]!} for '${named.path}' (see '${named.path} --help')`
  return extraOperand(named, after) ?? `expected ${named.usage} (see '${named.path} --help')`
}

type Definition = ReturnType<Cli["definitions"]>[number]

/** The command `argv` names: the one with the longest path its leading words spell. */
const commandNamed = (cli: Cli, argv: ReadonlyArray<string>): Definition | undefined =>
  cli
    .definitions()
    .filter((d) => d.path.split(" ").slice(1).every((word, i) => argv[i] === word))
    .sort((a, b) => b.path.length - a.path.length)[0]

/**
 * The first argument `named` has no place for, said as a usage error naming the command (what
 * clipanion calls an "Extraneous positional argument", or no match at all when a command that
 * takes none is given one). A flag's name after `--` is an argument there, and the message says so.
 */
const extraOperand = (named: Definition, after: ReadonlyArray<string>): string | null => {
  const places = argumentPlaces(named)
  const operands = places.filter((word) => /^[<[]/.test(word))
  const limit = places.some((word) => word.endsWith("...")) ? Infinity : operands.length
  const extra = operandsOf(after, named.options ?? [])[limit]
  if (extra === undefined) return null
  const takes = operands.length === 0 ? "it takes none" : `it takes ${operands.join(" ")}`
  // A lone "-" is an argument anywhere (stdin's usual name), with or without a "--" before it.
  const flag = extra.startsWith("-") && extra !== "-" ? `; after "--", ${extra} is an argument, not a flag` : ""
  return `unexpected argument ${JSON.stringify(extra)} for '${named.path}': ${takes}${flag} (see '${named.path} --help')`
}

/**
 * Which of `words` (what follows a command's path) are arguments rather than flags and their
 * values: a flag whose definition takes a value (`--from-stdout <value>`) takes the next word unless
 * it came with `=`, and everything after `--` is an argument.
 */
const operandsOf = (
  words: ReadonlyArray<string>,
  options: ReadonlyArray<{ readonly nameSet: ReadonlyArray<string>; readonly definition: string }>
): ReadonlyArray<string> => {
  const takesValue = new Set(options.filter((o) => o.definition.endsWith(VALUE)).flatMap((o) => o.nameSet))
  const operands: Array<string> = []
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!
    if (word === "--") return [...operands, ...words.slice(i + 1)]
    if (!word.startsWith("-") || word === "-") operands.push(word)
    else if (takesValue.has(word)) i += 1
  }
  return operands
}

/** The top level's own flags: clipanion registers each as a command whose path is that one word. */
const helpFlags = (Builtins.HelpCommand.paths ?? []).map((path) => path.join(" "))
const topLevelFlags = [...helpFlags, ...(Builtins.VersionCommand.paths ?? []).map((path) => path.join(" "))]

/**
 * What words after the top level's `--version` or `--help` mean. Those take no arguments, and
 * clipanion answered `repl --version extra` with its own "Extraneous positional argument", a
 * second `--version` with "unknown flag --version", and `repl --version --help` with its version
 * command's bare usage line (`$ repl -v`). A last `-h`/`--help` after them still asks for help,
 * the top level's; a lone `--` after them ends nothing, and is left to clipanion, which answers
 * as if it were not there.
 */
const afterTopLevelFlag = (argv: ReadonlyArray<string>): { readonly help: true } | { readonly line: string } | undefined => {
  const first = argv[0]
  if (first === undefined || !topLevelFlags.includes(first) || argv.length === 1) return undefined
  const rest = argv.slice(1)
  if (rest.every((word) => helpFlags.includes(word))) return { help: true }
  const operands = rest[0] === "--" ? rest.slice(1) : rest
  const extra = operands[0]
  if (extra === undefined) return undefined
  // `repl --help run list` was most likely meant as `repl run list --help`: name that.
  const names = helpFlags.includes(first) && commands.some((c) => c.paths.some((p) => operands.every((word, i) => p[i] === word)))
  const help = names ? `repl ${operands.join(" ")} --help` : "repl --help"
  return { line: `unexpected argument ${JSON.stringify(extra)} for 'repl ${first}': it takes none (see '${help}')` }
}

/**
 * `argv` with a "--" before the command moved to after the command's path: "--" ends the
 * options, and a command's name is none, so `repl -- run list --json` is `repl run list --
 * --json` and `repl --` is `repl`. A word after it that no command path starts with is left to
 * be named as an unknown command, and a flag's name there (`repl -- --version`) is said to be
 * an argument: clipanion matched its own commands' names as words after "--" too.
 */
const leadingEnd = (argv: ReadonlyArray<string>): { readonly argv: ReadonlyArray<string> } | { readonly line: string } => {
  if (argv[0] !== "--") return { argv }
  const words = argv.slice(1)
  const path = commands
    .flatMap((command) => command.paths)
    .filter((p) => p.every((word, i) => words[i] === word))
    .sort((a, b) => b.length - a.length)[0]
  if (path !== undefined) return { argv: [...path, "--", ...words.slice(path.length)] }
  const first = words[0]
  if (first === undefined || !first.startsWith("-") || first === "-") return { argv: words }
  return { line: `unknown command ${JSON.stringify(words.join(" "))}; after "--", ${first} is an argument, not a flag (see 'repl --help')` }
}

/** `word` as a shell reads it back: quoted when it holds anything but plain characters. */
const shellWord = (word: string): string => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`)

/**
 * clipanion's "Not enough arguments to option --limit." said plainly. It also comes when the
 * value starts with "-" (`--limit -1`, `-c -x`, `--env -X=1`), which clipanion takes for an
 * option: the `=` form passes such a value, and the command then judges it. A next word that
 * starts with "--" is a flag, not a value meant for this one.
 */
const missingValue = (first: string, argv: ReadonlyArray<string>, named: Definition | undefined): string | null => {
  const match = /^Not enough arguments to option (\S+?)\.?$/.exec(first)
  if (match === null) return null
  const option = match[1]!
  // The occurrence that lacks its value: an earlier one of a repeated flag had one.
  const at = argv.findIndex((word, i) => word === option && (argv[i + 1] === undefined || argv[i + 1]!.startsWith("-")))
  const next = at === -1 ? undefined : argv[at + 1]
  const where = helpFor(named)
  return next !== undefined && /^-[^-]/.test(next)
    ? `${option} needs a value; write ${option}=${shellWord(next)} for one that starts with "-"`
    : `${option} needs a value${where.of} (see '${where.help}')`
}

/** The command a usage error names ("for 'repl run'") and the help that explains it. */
const helpFor = (named: Definition | undefined): { readonly of: string; readonly help: string } =>
  named === undefined || named.path === "repl" ? { of: "", help: "repl --help" } : { of: ` for '${named.path}'`, help: `${named.path} --help` }

/**
 * A flag that takes one value given more than once (`-c A -c B`), said with its command;
 * clipanion kept the last value without a word. Its names as given (`-c/--command` when both were).
 */
const repeatedFlag = (error: RepeatedFlag, named: Definition | undefined): string => {
  const where = helpFor(named)
  return `${error.names.join("/")} given more than once${where.of}: it takes one value (see '${where.help}')`
}

/**
 * clipanion's "Unsupported option name" and "Invalid option name" said with the command they
 * were given to: a flag it does not know, or a value given to a flag that takes none
 * (`--spot=true`). Null for any other message.
 */
const badFlag = (first: string, named: Definition | undefined): string | null => {
  const match = /^(Unsupported|Invalid) option name \("(.+)"\)\.?$/.exec(first)
  if (match === null) return null
  const word = match[2]!
  const where = helpFor(named)
  const equals = word.indexOf("=")
  const flag = equals === -1 ? word : word.slice(0, equals)
  const known = equals !== -1 && (named?.options ?? []).some((o) => o.nameSet.includes(flag))
  return known
    ? `${flag} takes no value${where.of} (got "${word}"; see '${where.help}')`
    : `unknown flag ${flag}${where.of} (see '${where.help}')`
}

/**
 * The position of the first argument that is not UTF-8 text, as its bytes came (Linux's
 * /proc/self/cmdline), or null. The runtime hands such an argument on with U+FFFD for each bad
 * byte, so `repl run -c` would run another command than the one typed (naming another file,
 * say); only arguments holding U+FFFD are looked at, so the usual call reads nothing more.
 */
const notUtf8Argument = (argv: ReadonlyArray<string>): number | null => {
  if (!argv.some((word) => word.includes("\uFFFD"))) return null
  let raw: Buffer
  try {
    raw = readFileSync("/proc/self/cmdline")
  } catch {
    return null
  }
  const words: Array<Buffer> = []
  for (let start = 0; start < raw.length; ) {
    const end = raw.indexOf(0, start)
    words.push(raw.subarray(start, end === -1 ? raw.length : end))
    start = end === -1 ? raw.length : end + 1
  }
  const given = words.slice(words.length - argv.length)
  if (given.length !== argv.length) return null
  const decoder = new TextDecoder("utf-8", { fatal: true })
  const bad = given.findIndex((word) => {
    try {
      decoder.decode(word)
      return false
    } catch {
      return true
    }
  })
  return bad === -1 ? null : bad
}

export const main = async (given: ReadonlyArray<string>): Promise<number> => {
  const ended = leadingEnd(given)
  // Found before any command runs, from the words alone: JSON too when they ask for it.
  const usageError = (line: string): number => reportFailure(line, USAGE, "argv" in ended && jsonAsked(ended.argv))
  // On the words as typed: their positions are the command line's.
  const notText = notUtf8Argument(given)
  if (notText !== null) {
    const line = `argument ${notText + 1} (${JSON.stringify(given[notText])}) is not UTF-8 text, so it cannot be passed on as given`
    return usageError(line)
  }
  if ("line" in ended) return reportFailure(ended.line, USAGE, false)
  const argv = ended.argv
  const cli = makeCli()
  const topLevel = afterTopLevelFlag(argv)
  if (topLevel !== undefined) {
    return "help" in topLevel ? printAndEnd(cli.usage(null, { colored: useColor(stdout) })) : usageError(topLevel.line)
  }
  const help = helpAsked(cli, argv)
  if (help !== undefined) {
    const color = useColor(stdout)
    if ("top" in help) return printAndEnd(cli.usage(null, { colored: color }))
    return printAndEnd("command" in help ? cli.usage(help.command, { detailed: true, colored: color }) : groupUsage(cli, help.group, help.under, color))
  }
  let command
  try {
    // No stdio in the context: the CLI's commands write through ./stdio.ts, and the streams
    // are not made unless something needs them (see the build script for clipanion's side).
    command = cli.process([...argv], { env: process.env })
  } catch (error) {
    if (error instanceof RepeatedFlag) return usageError(repeatedFlag(error, commandNamed(cli, argv)))
    const message = error instanceof Error ? error.message : String(error)
    // clipanion's parse errors span several lines (candidates, usage); the first says what is wrong.
    const first = message.split("\n").find((l) => l.trim() !== "")?.trim() ?? "invalid usage"
    const named = commandNamed(cli, argv)
    const near = nearMiss(cli, argv)
    if (near !== null) return usageError(near)
    const extra = first.startsWith("Extraneous positional argument") && named !== undefined ? extraOperand(named, argv.slice(named.path.split(" ").length - 1)) : null
    // clipanion calls a lone "-" an invalid option name when no command path takes it; it is
    // an argument, which where a command's name belongs makes it an unknown command.
    const line = first.startsWith("Command not found") || first.startsWith("Not enough positional arguments") || first.startsWith(`Invalid option name ("-")`)
      ? noCommandMatched(cli, argv)
      : (extra ?? missingValue(first, argv, named) ?? badFlag(first, named) ?? `${first} (see 'repl --help')`)
    return usageError(line)
  }
  // `repl --help`: the same text clipanion's help command writes, through the CLI's stdout, so a
  // reader gone or a full disk ends it as every command's output does.
  if (command instanceof Builtins.HelpCommand) return printAndEnd(cli.usage(null, { colored: useColor(stdout) }))
  // `repl --version --`, which entry.ts does not answer: as there, a full disk or a reader gone
  // is the status (clipanion's own version command wrote to process.stdout and ended 0 anyway).
  if (command instanceof Builtins.VersionCommand) return printAndEnd(`${VERSION}\n`)
  // Any other command of clipanion's own writes to the context's streams.
  if (!(command instanceof SkyReplCommand)) return cli.run(command, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr })
  if (command.help) {
    return printAndEnd(cli.usage(command, { detailed: true, colored: useColor(stdout) }))
  }
  try {
    return await command.validateAndExecute()
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    return usageError(message.split("\n")[0] ?? message)
  }
}
