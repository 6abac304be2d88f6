import { describeCause, type ProviderService, type SkyRepl, type SkyReplSettings } from "@skyrepl/core"
import { Command } from "clipanion"
import { Cause, Effect, Exit, Fiber, Logger, type Scope } from "effect"
import { explain } from "./errors.ts"
import { useColor } from "./format.ts"
import { BROKEN_PIPE, isBrokenPipe, printAndEnd, tellFailure, WRITE_FAILED, writeFailure } from "./print.ts"
import { printable } from "./printable.ts"
import { engineLayer, loadSettings } from "./runtime.ts"
import { type Output, stderr, stdout } from "./stdio.ts"

/**
 * Engine warnings (a failed reap, a slow termination) go to stderr, never into stdout's data, as
 * one line of printable text: they quote names and messages from providers and agents.
 */
const stderrLogger = Logger.replace(
  Logger.defaultLogger,
  Logger.make(({ logLevel, message }) => {
    const text = Array.isArray(message) ? message.map(describeCause).join(" ") : describeCause(message)
    stderr.write(`repl: ${logLevel.label.toLowerCase()}: ${printable(text)}\n`)
  })
)

/** Output bytes held for a slow reader before a command stops reading more (see `outputRoom`). */
const QUEUED_LIMIT = 4 * 1024 * 1024

/** Writes to stdout; a reader that is gone already is no one to tell. */
const writeStdoutQuietly = (data: string): void => {
  printAndEnd(data)
}

/**
 * How a failure ends: one line on stderr and, when `--json` was given (see `jsonAsked`), the same
 * message without `repl: ` and the exit status as an `error` object on a line of its own on
 * stdout, so that a script reading the command's JSON learns how it ended from stdout too. The
 * one place that writes a failure, for the commands and for main.ts's usage errors found before
 * any command runs.
 */
export const reportFailure = (message: string, status: number, json: boolean, out: (data: string) => void = writeStdoutQuietly): number => {
  tellFailure(message)
  // The same words as on stderr (where they are printable text), as the docs promise.
  if (json) out(JSON.stringify({ type: "error", message: printable(message), status }) + "\n")
  return status
}

/**
 * Whether `argv` asks for JSON, read from the words as clipanion reads them: `--json` before any
 * `--` (after it, it is an argument), not undone by a later `--no-json`. Whatever the command:
 * a script that gave `--json` parses stdout, also when the words name no command or clipanion
 * refused them. A command that runs has the same answer in its parsed `json` flag.
 */
export const jsonAsked = (argv: ReadonlyArray<string>): boolean => {
  const end = argv.indexOf("--")
  const options = end === -1 ? argv : argv.slice(0, end)
  return options.lastIndexOf("--json") > options.lastIndexOf("--no-json")
}

/** Exit status for a CLI call ended by Ctrl-C, Ctrl-\, SIGTERM, SIGHUP or another signal that would kill it, as shells report Ctrl-C. */
export const INTERRUPTED = 130

/**
 * The signals that interrupt a command's program, so that its scopes close and end their
 * instances: every signal whose default action kills a process and that something other than
 * the process's own fault sends (not SIGSEGV, SIGBUS, SIGILL, SIGFPE: a crash has no scopes left
 * to trust; not SIGPIPE: a reader that left is the output's failure, said as one).
 */
// SIGQUIT is the terminal's Ctrl-\, the key pressed when Ctrl-C seems not to work: left to its
// default action it killed `repl run` outright, leaving the instance to the next command. The
// rest came the same way: `kill -USR1` (a log-rotation habit), an `alarm` a wrapper set, CPU
// time limits (`ulimit -t` sends SIGXCPU before it kills), profilers' timers; each killed `repl`
// with its instance left to the dead-man switch. (Bun cannot listen for SIGPWR.) A Promise client
// in a user's process leaves these alone: SIGUSR1 is Node's signal to start its inspector.
const INTERRUPTING_SIGNALS: ReadonlyArray<NodeJS.Signals> = [
  "SIGINT",
  "SIGTERM",
  "SIGHUP",
  "SIGQUIT",
  "SIGUSR1",
  "SIGUSR2",
  "SIGALRM",
  "SIGVTALRM",
  "SIGPROF",
  "SIGXCPU"
]

/** What `preflight` hands on: the command's flags, checked, and any provider built to check them. */
export interface Checked<Flags> {
  readonly flags: Flags
  readonly providers?: ReadonlyArray<ProviderService>
}

/** The preflight of a command with nothing to check before the engine. */
export const nothingToCheck: Effect.Effect<Checked<undefined>> = Effect.succeed({ flags: undefined })

/**
 * Every command runs one Effect program. Failures become one line on stderr and an exit
 * status; no stack trace reaches the user (set SKYREPL_DEBUG=1 to see the full cause).
 * SIGINT, SIGTERM, SIGHUP, SIGQUIT and the other signals that would kill `repl` (INTERRUPTING_SIGNALS)
 * interrupt the program, so scopes close and instances are terminated.
 */
export abstract class SkyReplCommand<Flags = undefined> extends Command {
  /**
   * The command's flags parsed and checked before the engine is built, and so before the store
   * is opened: a usage error then writes nothing, starts nothing, and reaps nothing (building
   * the engine reaps instances whose owners are gone).
   */
  protected abstract preflight(settings: SkyReplSettings): Effect.Effect<Checked<Flags>, unknown, Scope.Scope>

  /** The program, given the checked flags and the settings read from the environment. */
  protected abstract program(flags: Flags, settings: SkyReplSettings): Effect.Effect<number, unknown, SkyRepl | Scope.Scope>

  /** What Ctrl-C (or SIGTERM) did, said when it ends the command. */
  protected interrupted = "interrupted"

  /** Whether its failures are said as JSON too: `--json` was given (see `jsonAsked`). */
  private jsonErrors(): boolean {
    return "json" in this && this.json === true
  }

  private ending(message: string, status: number): number {
    return reportFailure(message, status, this.jsonErrors(), (data) => this.out(data))
  }

  protected get color(): boolean {
    return useColor(stdout)
  }

  /** Set once stdout's reader is gone (`repl run … | head -1`): the program is then stopped. */
  private pipeBroken = false
  /** The first write that failed otherwise (a full disk): the program is then stopped too. */
  private writeFailed: string | null = null
  private stop: () => void = () => undefined

  private write(output: Output, data: string | Uint8Array): void {
    if (this.pipeBroken || this.writeFailed !== null) return
    try {
      output.write(data)
    } catch (error) {
      this.outputFailed(output === stdout ? "stdout" : "stderr", error)
    }
  }

  /** A write to `name` failed, now or from the queue: either way the output is lost from here on. */
  private outputFailed(name: "stdout" | "stderr", error: unknown): void {
    if (isBrokenPipe(error)) this.pipeBroken = true
    else this.writeFailed ??= writeFailure(name, error)
    this.stop()
  }

  /** Writes to stdout; a closed pipe stops the program (and so ends its instances) quietly. */
  protected out(data: string | Uint8Array): void {
    this.write(stdout, data)
  }

  protected err(data: string | Uint8Array): void {
    this.write(stderr, data)
  }

  /**
   * Waits while more than `QUEUED_LIMIT` bytes of output wait for a slow reader (`repl run … |
   * less`), so that a large output is read from the store as it is written out rather than held
   * in memory: unbounded, that grew the process by every byte the reader had not taken yet.
   * Asynchronous, so the engine (heartbeats, leases) goes on meanwhile.
   */
  protected readonly outputRoom: Effect.Effect<void> = Effect.suspend(() =>
    stdout.queued() + stderr.queued() > QUEUED_LIMIT ? Effect.promise(() => Promise.all([stdout.flush(), stderr.flush()])) : Effect.void
  )

  async execute(): Promise<number> {
    const main = Effect.gen(this, function* () {
      const settings = yield* loadSettings
      const checked = yield* this.preflight(settings)
      // The program's scope (its launches) must close while the engine is still up: the
      // launches' finalizers terminate instances through the store and the providers.
      return yield* this.program(checked.flags, settings).pipe(Effect.scoped, Effect.provide(engineLayer(settings, checked.providers ?? [])))
    }).pipe(Effect.scoped, Effect.provide(stderrLogger))
    const fiber = Effect.runFork(main)
    const interrupt = () => {
      Effect.runFork(Fiber.interrupt(fiber))
    }
    this.stop = interrupt
    const stopListening = [
      stdout.onSinkError((error) => this.outputFailed("stdout", error)),
      stderr.onSinkError((error) => this.outputFailed("stderr", error))
    ]
    // Ctrl-C is often pressed twice. The first interrupts the program, whose scopes then end
    // their instances (a VM's termination takes a second or two); the second only says so, as
    // leaving now would leave the instance to a later process's reaper. A third leaves anyway.
    let signals = 0
    const onSignal = () => {
      signals += 1
      if (signals === 1) interrupt()
      else if (signals === 2) stderr.write("repl: still ending the instance; interrupt once more to leave it to the next repl command\n")
      else process.exit(INTERRUPTED)
    }
    // SIGHUP too: a closed terminal or a dropped SSH session must end the instance as Ctrl-C does.
    for (const signal of INTERRUPTING_SIGNALS) process.on(signal, onSignal)
    const exit = await Effect.runPromise(Fiber.await(fiber))
    for (const signal of INTERRUPTING_SIGNALS) process.off(signal, onSignal)
    // A large output is still being written to a slow reader: how that ends is the command's
    // status too (a reader that left after the program ended, a disk that filled up).
    await Promise.all([stdout.flush(), stderr.flush()])
    for (const stopOne of stopListening) stopOne()
    // A closed terminal both hangs up and fails the writes to it (EIO), in either order: the
    // hang-up is what ended the command, which then ends as every interruption does (130).
    if (signals > 0 && (this.pipeBroken || this.writeFailed !== null)) return this.ending(this.interrupted, INTERRUPTED)
    // Like any filter in a pipeline whose reader left: no message, status 128 + SIGPIPE.
    if (this.pipeBroken) return BROKEN_PIPE
    if (this.writeFailed !== null) {
      tellFailure(this.writeFailed)
      return WRITE_FAILED
    }
    if (Exit.isSuccess(exit)) return exit.value
    if (Cause.isInterruptedOnly(exit.cause)) return this.ending(this.interrupted, INTERRUPTED)
    const { line, code } = explain(exit.cause)
    const status = this.ending(line, code)
    if (process.env["SKYREPL_DEBUG"] === "1") stderr.write(Cause.pretty(exit.cause) + "\n")
    return status
  }
}
