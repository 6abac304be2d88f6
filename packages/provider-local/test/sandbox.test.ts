import { type InstanceRef, type ProviderService, ProviderError } from "@skyrepl/core"
import { type FakeController, makeFakeController, removeStateHome } from "@skyrepl/core/testing"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Logger, Schema, Scope } from "effect"
import { execa } from "execa"
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { hostname, tmpdir } from "node:os"
import { join } from "node:path"
import type { Readable } from "node:stream"
import { LocalApi, LocalProvider, type LocalProviderOptions } from "../src/index.ts"
import {
  cmdline,
  environ,
  eventually,
  fixture,
  leftovers,
  makeTestContext,
  sandboxOf,
  stillAlive,
  typescriptRunner
} from "./helpers.ts"

const context = makeTestContext()

const instanceDir = (name: string) => `${context.home}/local/instances/${name}`

/** Spawns `name` and terminates it when the test's scope closes, pass or fail. */
const spawnScoped = (provider: ProviderService, controller: FakeController, name: string, spec: string) =>
  Effect.gen(function* () {
    const parsed = yield* provider.parseSpec(spec)
    const bootstrap = yield* controller.bootstrap(name)
    const result = yield* Effect.acquireRelease(provider.spawn(name, parsed, bootstrap), () =>
      Effect.orDie(provider.terminate({ name, providerRef: null, region: null }))
    )
    const ref: InstanceRef = { name, providerRef: result.providerRef, region: null }
    return { ref, bootstrap }
  })

/** Reads up to the first newline without consuming the stream to its end (the writer may live on). */
const firstLine = (stream: Readable) =>
  Effect.async<string>((resume) => {
    let text = ""
    const onData = (chunk: Buffer) => {
      text += chunk.toString("utf8")
      const newline = text.indexOf("\n")
      if (newline >= 0) done(text.slice(0, newline))
    }
    const onEnd = () => done(text)
    const done = (line: string) => {
      stream.off("data", onData)
      stream.off("end", onEnd)
      resume(Effect.succeed(line))
    }
    stream.on("data", onData)
    stream.on("end", onEnd)
  })

/**
 * Each kind of sandbox exec'd, and forked by the agent's fork server: both must look alike to
 * everything that finds, lists and kills sandboxes.
 */
const modes = [
  { label: "namespace sandbox", isolation: "namespaces", spec: "sandbox", forkServer: "never" },
  { label: "process group", isolation: "auto", spec: "process", forkServer: "never" },
  { label: "process group (isolation none)", isolation: "none", spec: "sandbox", forkServer: "never" },
  { label: "namespace sandbox, forked", isolation: "namespaces", spec: "sandbox", forkServer: "always" },
  { label: "process group, forked", isolation: "auto", spec: "process", forkServer: "always" }
] as const

describe("local provider", () => {
  it.effect("parses specs: nothing and sandbox are the default, process forces a process group", () =>
    Effect.gen(function* () {
      const provider = yield* LocalProvider.make({ home: context.home })
      expect((yield* provider.parseSpec(undefined)).canonical).toBe("sandbox")
      expect((yield* provider.parseSpec("")).canonical).toBe("sandbox")
      expect((yield* provider.parseSpec("process")).attributes).toEqual({ mode: "process" })
      const error = yield* Effect.flip(provider.parseSpec("gpu"))
      expect(error.validForms.join(" ")).toMatch(/sandbox/)
      expect(error.validForms.join(" ")).toMatch(/process/)
      expect((yield* Effect.flip(provider.parseSpec("sandbox", { region: "us-east-1" })))._tag).toBe("InvalidSpec")
      expect((yield* Effect.flip(provider.parseSpec(undefined, { spot: true })))._tag).toBe("InvalidSpec")
      expect((yield* provider.parseSpec("process", { spot: false })).canonical).toBe("process")
    })
  )

  it.effect("declares its isolation", () =>
    Effect.gen(function* () {
      expect((yield* LocalProvider.make({ home: context.home, isolation: "namespaces" })).capabilities.isolation).toBe(
        "namespaces"
      )
      expect((yield* LocalProvider.make({ home: context.home, isolation: "none" })).capabilities.isolation).toBe("none")
    })
  )

  it.scopedLive("without unshare, auto falls back to process groups and insisting on namespaces fails the spawn", () =>
    Effect.gen(function* () {
      const path = process.env["PATH"]
      process.env["PATH"] = "/nonexistent"
      const [auto, strict] = yield* Effect.all([
        LocalProvider.make({ home: context.home, isolation: "auto", python: "/usr/bin/python3" }),
        LocalProvider.make({ home: context.home, isolation: "namespaces", python: "/usr/bin/python3" })
      ]).pipe(
        Effect.ensuring(
          Effect.sync(() => {
            process.env["PATH"] = path
          })
        )
      )
      expect(auto.capabilities.isolation).toBe("none")
      expect(strict.capabilities.isolation).toBe("namespaces")
      const controller = yield* makeFakeController()
      const name = context.newName()
      const error = yield* Effect.flip(strict.spawn(name, yield* strict.parseSpec("sandbox"), yield* controller.bootstrap(name)))
      expect(error).toBeInstanceOf(ProviderError)
      expect(error.reason).toBe("unavailable")
      expect(yield* strict.describe({ name, providerRef: null, region: null })).toBe("gone")
    })
  )

  it.scopedLive("a spawn interrupted while the namespaces are probed leaves later spawns working", () =>
    Effect.gen(function* () {
      // The probe runs once per provider, at its first sandbox spawn (an Effect.timeout or a
      // dispose during an application's first launch). Kept with Effect.cached, the interruption
      // was the probe's answer from then on: every later spawn failed as interrupted.
      const provider = yield* LocalProvider.make({ home: context.home, forkServer: "never" })
      const controller = yield* makeFakeController()
      const first = context.newName()
      const interrupted = yield* Effect.fork(provider.spawn(first, yield* provider.parseSpec("sandbox"), yield* controller.bootstrap(first)))
      yield* Effect.sleep("2 millis")
      expect(Exit.isInterrupted(yield* Fiber.interrupt(interrupted))).toBe(true)
      const { ref } = yield* spawnScoped(provider, controller, context.newName(), "sandbox")
      expect(yield* provider.describe(ref)).not.toBe("gone")
    })
  )

  it.scopedLive("spawn failures are classified ProviderErrors", () =>
    Effect.gen(function* () {
      const controller = yield* makeFakeController()
      const name = context.newName()
      const bootstrap = yield* controller.bootstrap(name)
      const spec = { provider: "local", canonical: "sandbox", region: null, attributes: { mode: "sandbox" } }

      // An interpreter asked for and not there is a setting to fix: the provider says so when
      // built (a launch refuses it before recording anything), and a spawn fails on it.
      const noPython = yield* LocalProvider.make({ home: context.home, python: "/nonexistent/python3" })
      expect(noPython.configurationProblem).toBe("the python option: /nonexistent/python3 is not an executable file")
      const e1 = yield* Effect.flip(noPython.spawn(name, spec, bootstrap))
      expect([e1.reason, e1.operation]).toEqual(["invalid-request", "spawn"])

      const notOnPath = yield* LocalProvider.make({ home: context.home, python: "no-such-python-here" })
      expect(notOnPath.configurationProblem).toBe('the python option: no "no-such-python-here" on PATH')
      expect((yield* Effect.flip(notOnPath.spawn(name, spec, bootstrap))).reason).toBe("invalid-request")

      const provider = yield* LocalProvider.make({ home: context.home })
      const e2 = yield* Effect.flip(provider.spawn(name, spec, { ...bootstrap, agentScript: "/nonexistent/agent.py" }))
      expect(e2.reason).toBe("unavailable")

      for (const bad of ["not-an-instance", "../../etc", "repl-x"]) {
        expect((yield* Effect.flip(provider.spawn(bad, spec, bootstrap))).reason).toBe("invalid-request")
        expect((yield* Effect.flip(provider.terminate({ name: bad, providerRef: null, region: null }))).reason).toBe(
          "invalid-request"
        )
        expect((yield* Effect.flip(provider.describe({ name: bad, providerRef: null, region: null }))).reason).toBe(
          "invalid-request"
        )
      }
      expect(leftovers(context.controlId).filter((p) => p.instance === name)).toEqual([])
    })
  )

  it.scopedLive("a SKYREPL_FORK_SERVER that is not a mode fails spawns with the variable named, and starts nothing", () =>
    Effect.gen(function* () {
      process.env["SKYREPL_FORK_SERVER"] = "yes"
      const provider = yield* LocalProvider.make({ home: context.home }).pipe(
        Effect.ensuring(Effect.sync(() => delete process.env["SKYREPL_FORK_SERVER"]))
      )
      const controller = yield* makeFakeController()
      const name = context.newName()
      const error = yield* Effect.flip(provider.spawn(name, yield* provider.parseSpec("sandbox"), yield* controller.bootstrap(name)))
      expect([error.reason, error.message]).toEqual([
        "invalid-request",
        'SKYREPL_FORK_SERVER: "yes" is not one of auto, always, never'
      ])
      expect(existsSync(instanceDir(name))).toBe(false)
      // An option given in code is used as it is, whatever the variable says.
      process.env["SKYREPL_FORK_SERVER"] = "yes"
      const given = yield* LocalProvider.make({ home: context.home, forkServer: "never" }).pipe(
        Effect.ensuring(Effect.sync(() => delete process.env["SKYREPL_FORK_SERVER"]))
      )
      yield* spawnScoped(given, controller, name, "sandbox")
      yield* controller.registration(name, "30 seconds")
    })
  )

  it.scopedLive("options of the wrong type or form are configuration problems, and a terminateTimeout in the CLI's form ends its sandbox", () =>
    Effect.gen(function* () {
      const problem = (options: unknown) =>
        Effect.map(
          Effect.exit(LocalProvider.make(options as LocalProviderOptions)),
          (exit) => (Exit.isSuccess(exit) ? (exit.value.configurationProblem ?? "none") : `the provider failed: ${String(exit.cause)}`)
        )
      // A TypeError each, a mode that is none taken as "auto", and a misspelt key dropped.
      expect([
        yield* problem({ home: 5 }),
        yield* problem(null),
        yield* problem({ home: context.home, python: ["python3"] }),
        yield* problem({ home: context.home, isolation: "full" }),
        yield* problem({ home: context.home, forkserver: "never" }),
        yield* problem({ home: context.home, terminateTimeout: "soon" }),
        // Waiting no time, terminate reported failure before the sandbox could go; 10n was 10 ns.
        yield* problem({ home: context.home, terminateTimeout: 0 }),
        yield* problem({ home: context.home, terminateTimeout: 10n }),
        // Was "the home option: Expected string, actual /…", a string refused as not one.
        yield* problem({ home: Object(context.home) })
      ]).toEqual([
        "the home option: Expected string, actual 5",
        "LocalProvider options must be an object, not null",
        'the python option: Expected string, actual ["python3"]',
        'the isolation option: "full" is not one of auto, namespaces, none',
        '"forkserver" is not one of the LocalProvider options (home, python, isolation, terminateTimeout, forkServer)',
        'the terminateTimeout option: "soon" is not a duration (give e.g. "30s", "5m", Duration.minutes(5) or a number of milliseconds)',
        "the terminateTimeout option: 0 is no time at all; give at least 1ms",
        'the terminateTimeout option: 10n is a bigint, which Effect reads as nanoseconds (a number is milliseconds); give a number of milliseconds, "30s" or Duration.seconds(30)',
        `LocalProvider options: home: new String(${JSON.stringify(context.home)}) is an object, not a string; give the value itself`
      ])
      // Effect cannot decode "10s": the terminate threw it as a defect, and the sandbox lived on.
      const provider = yield* LocalProvider.make({ home: context.home, terminateTimeout: "10s", forkServer: "never" })
      expect(provider.configurationProblem).toBeUndefined()
      const controller = yield* makeFakeController()
      const name = context.newName()
      const spawned = yield* provider.spawn(name, yield* provider.parseSpec("sandbox"), yield* controller.bootstrap(name))
      const ref = { name, providerRef: spawned.providerRef, region: null }
      expect(yield* Effect.exit(provider.terminate(ref))).toEqual(Exit.void)
      expect(yield* provider.describe(ref)).toBe("gone")
    })
  )

  it.scopedLive("refuses to spawn a name that is already running", () =>
    Effect.gen(function* () {
      const provider = yield* LocalProvider.make({ home: context.home })
      const controller = yield* makeFakeController()
      const name = context.newName()
      const { bootstrap } = yield* spawnScoped(provider, controller, name, "sandbox")
      yield* controller.registration(name, "30 seconds")
      const spec = yield* provider.parseSpec("process")
      const error = yield* Effect.flip(provider.spawn(name, spec, bootstrap))
      expect(error.reason).toBe("invalid-request")
      expect((yield* sandboxOf(name))?.root.pid).toBeDefined()
    })
  )

  it.scopedLive("in a namespace sandbox the hostname is the instance name and the agent is pid 1", () =>
    Effect.gen(function* () {
      const provider = yield* LocalProvider.make({ home: context.home, isolation: "namespaces" })
      const controller = yield* makeFakeController()
      const name = context.newName()
      yield* spawnScoped(provider, controller, name, "sandbox")
      const registration = yield* controller.registration(name, "30 seconds")
      expect(registration.hostname).toBe(name)
      expect(registration.pid).toBe(1)
      // The host keeps its own name: the uts namespace is the sandbox's alone.
      expect(hostname()).not.toBe(name)
    })
  )

  // CI runs as root; a user's machine does not. As another user, namespaces come through a user
  // namespace (`--map-root-user`), where the hostname must be set by sethostname(2).
  const setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].find((path) => existsSync(path))
  for (const forkServer of ["never", "always"] as const) {
    it.scopedLive.skipIf(process.getuid?.() !== 0 || setpriv === undefined)(
      `as a user who is not root, a namespace sandbox starts with the instance's hostname (fork server ${forkServer})`,
      () =>
        Effect.gen(function* () {
          const controller = yield* makeFakeController()
          const name = context.newName()
          const home = mkdtempSync(join(tmpdir(), "skyrepl-local-nobody-"))
          chmodSync(home, 0o777)
          yield* Effect.addFinalizer(() => Effect.sync(() => removeStateHome(home)))
          const provider = yield* LocalProvider.make({ home })
          yield* Effect.addFinalizer(() => Effect.orDie(provider.terminate({ name, providerRef: null, region: null })))
          const bootstrap = yield* controller.bootstrap(name)
          const [file, args] = typescriptRunner(fixture("spawn.ts"))
          const request = { home, spec: "sandbox", name, after: "exit", bootstrap, forkServer }
          const spawner = yield* Effect.promise(() =>
            execa(setpriv ?? "", ["--reuid=65534", "--regid=65534", "--clear-groups", file, ...args], {
              env: { SKYREPL_FIXTURE_REQUEST: JSON.stringify(request), HOME: home },
              reject: false
            })
          )
          expect({ exitCode: spawner.exitCode, stderr: spawner.stderr }).toMatchObject({ exitCode: 0 })
          const registration = yield* controller.registration(name, "30 seconds")
          expect([registration.hostname, registration.pid]).toEqual([name, 1])
          const sandbox = yield* sandboxOf(name)
          expect(sandbox?.root.pid).toBeDefined()
          expect(readFileSync(`/proc/${sandbox?.root.pid}/status`, "utf8")).toMatch(/^Uid:\s+65534\s/m)
        }),
      60_000
    )
  }

  const prlimit = ["/usr/bin/prlimit", "/bin/prlimit"].find((path) => existsSync(path))
  it.scopedLive.skipIf(prlimit === undefined)(
    "a terminate that runs out of descriptors fails as a retryable error, and the next one ends the sandbox",
    () =>
      Effect.gen(function* () {
        const provider = yield* LocalProvider.make({ home: context.home })
        const controller = yield* makeFakeController()
        const name = context.newName()
        const { ref } = yield* spawnScoped(provider, controller, name, "sandbox")
        yield* controller.registration(name, "30 seconds")
        const soft = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"))?.[1] ?? "1024"
        const setLimit = (limit: number | string) => Effect.promise(() => execa(prlimit ?? "", [`--pid=${process.pid}`, `--nofile=${limit}:`]))
        // RLIMIT_NOFILE bounds descriptor numbers. With the limit a few above the highest one
        // open, those few are taken here: every open after that fails with EMFILE, until they
        // are closed, which leaves room to restore the limit.
        const spare: Array<number> = []
        const highest = Math.max(...readdirSync("/proc/self/fd").map(Number))
        yield* setLimit(highest + 32)
        for (;;) {
          try {
            spare.push(openSync("/dev/null", "r"))
          } catch {
            break
          }
        }
        const starved = yield* Effect.exit(provider.terminate(ref))
        for (const fd of spare) closeSync(fd)
        yield* setLimit(soft)
        const error = Exit.isFailure(starved) && starved.cause._tag === "Fail" ? starved.cause.error : null
        expect(error).toBeInstanceOf(ProviderError)
        expect([error?.reason, error?.retryable, error?.message]).toEqual(["transient", true, expect.stringContaining("EMFILE")])
        yield* provider.terminate(ref)
        expect(yield* sandboxOf(name)).toBeUndefined()
        expect(existsSync(instanceDir(name))).toBe(false)
      }),
    60_000
  )

  // A mount inside the instance's directory makes it impossible to remove, as a read-only home
  // does; mounting needs root.
  it.scopedLive.skipIf(process.getuid?.() !== 0)(
    "a termination whose sandbox ended succeeds though its directory cannot be removed, and leaves it",
    () =>
      Effect.gen(function* () {
        const provider = yield* LocalProvider.make({ home: context.home })
        const controller = yield* makeFakeController()
        const name = context.newName()
        const { ref } = yield* spawnScoped(provider, controller, name, "process")
        yield* controller.registration(name, "30 seconds")
        const mountPoint = `${instanceDir(name)}/work`
        yield* Effect.acquireRelease(
          Effect.promise(() => execa("mount", ["-t", "tmpfs", "none", mountPoint])),
          () => Effect.promise(() => execa("umount", ["-l", mountPoint], { reject: false }))
        )
        const warnings: Array<unknown> = []
        const capture = Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => void warnings.push(message)))
        yield* provider.terminate(ref).pipe(Effect.provide(capture))
        expect(yield* provider.describe(ref)).toBe("gone")
        expect(leftovers(context.controlId).filter((p) => p.instance === name)).toEqual([])
        expect(existsSync(mountPoint)).toBe(true)
        // The system's words, not `Error: EBUSY: …` as String() of the error gave them.
        expect(warnings).toEqual([
          [expect.stringMatching(new RegExp(`^${name} has ended, but its directory is left: cannot remove ${instanceDir(name)}: E[A-Z]+: [a-z]`))]
        ])
      })
  )

  it.effect("a directory that cannot be removed is said in the system's words, not as `Error: …`", () =>
    Effect.gen(function* () {
      // A file where the instances directory should be: rm says ENOTDIR.
      const blocker = join(context.home, `not-a-directory-${context.newName()}`)
      writeFileSync(blocker, "")
      const paths = LocalApi.instancePaths(blocker, "repl-x")
      const error = yield* Effect.flip(LocalApi.removeInstanceDir(paths))
      expect(error.message).toMatch(new RegExp(`^cannot remove ${paths.dir}: ENOTDIR: not a directory, \\w+ '${paths.dir}'$`))
    })
  )

  it.scopedLive("a process-group sandbox keeps the host's hostname", () =>
    Effect.gen(function* () {
      const provider = yield* LocalProvider.make({ home: context.home })
      const controller = yield* makeFakeController()
      const name = context.newName()
      const { ref } = yield* spawnScoped(provider, controller, name, "process")
      const registration = yield* controller.registration(name, "30 seconds")
      expect(registration.hostname).toBe(hostname())
      expect(String(registration.pid)).toBe(ref.providerRef)
    })
  )

  for (const mode of modes) {
    describe(mode.label, () => {
      it.scopedLive("runs detached, in its own session, with the token only in its environment", () =>
        Effect.gen(function* () {
          const provider = yield* LocalProvider.make({ home: context.home, isolation: mode.isolation, forkServer: mode.forkServer })
          const controller = yield* makeFakeController()
          const name = context.newName()
          const secret = `controller-secret-${name}`
          process.env["SKYREPL_TEST_CONTROLLER_SECRET"] = secret
          const { ref, bootstrap } = yield* spawnScoped(provider, controller, name, mode.spec).pipe(
            Effect.ensuring(
              Effect.sync(() => {
                delete process.env["SKYREPL_TEST_CONTROLLER_SECRET"]
              })
            )
          )
          yield* controller.registration(name, "30 seconds")
          const sandbox = yield* sandboxOf(name)
          if (sandbox === undefined) return expect.unreachable("the sandbox is not in /proc")
          expect(String(sandbox.root.pid)).toBe(ref.providerRef)
          expect(sandbox.root.sid).toBe(sandbox.root.pid)
          // Forked, not exec'd: the root has the name the fork server gives it.
          expect(readFileSync(`/proc/${sandbox.root.pid}/comm`, "utf8").trim() === "skyrepl-sandbox").toBe(
            mode.forkServer === "always"
          )
          for (const member of sandbox.members) {
            expect(cmdline(member.pid).join(" ")).not.toContain(bootstrap.token)
            expect(environ(member.pid).join("\n")).not.toContain(secret)
            // A forked sandbox wrote its own variables over the fork server's.
            expect(environ(member.pid).join("\n")).not.toContain("SKYREPL_FORK_SERVER_ROOM")
          }
          expect(sandbox.members.some((p) => environ(p.pid).includes(`SKYREPL_AGENT_TOKEN=${bootstrap.token}`))).toBe(
            true
          )
          expect(existsSync(`${instanceDir(name)}/work`)).toBe(true)
          expect(existsSync(`${instanceDir(name)}/agent.log`)).toBe(true)
          yield* provider.terminate(ref)
          expect(existsSync(instanceDir(name))).toBe(false)
        }).pipe(
          Effect.ensuring(
            Effect.sync(() => {
              delete process.env["SKYREPL_TEST_CONTROLLER_SECRET"]
            })
          )
        )
      )

      it.scopedLive("a run inside carries the marker, not the token, and sees the sandbox's hostname", () =>
        Effect.gen(function* () {
          const provider = yield* LocalProvider.make({ home: context.home, isolation: mode.isolation, forkServer: mode.forkServer })
          const controller = yield* makeFakeController()
          const name = context.newName()
          yield* spawnScoped(provider, controller, name, mode.spec)
          yield* controller.registration(name, "30 seconds")
          const runId = `run-${name}`
          yield* controller.send(name, "run", {
            runId,
            command: 'hostname; echo "$SKYREPL_INSTANCE"; echo "${SKYREPL_AGENT_TOKEN-no token}"',
            env: {},
            workdir: null,
            maxDurationMs: null
          })
          const exit = yield* controller.exit(runId, "30 seconds")
          expect([exit.exitCode, exit.reason]).toEqual([0, "exited"])
          const lines = (yield* controller.output(runId, "stdout")).toString("utf8").trim().split("\n")
          const expectedHost = mode.isolation === "namespaces" ? name : hostname()
          expect(lines).toEqual([expectedHost, name, "no token"])
        })
      )

      it.scopedLive("terminate kills the whole tree, including a grandchild that detached into its own session", () =>
        Effect.gen(function* () {
          const provider = yield* LocalProvider.make({ home: context.home, isolation: mode.isolation, forkServer: mode.forkServer })
          const controller = yield* makeFakeController()
          const name = context.newName()
          const { ref } = yield* spawnScoped(provider, controller, name, mode.spec)
          yield* controller.registration(name, "30 seconds")
          yield* controller.send(name, "run", {
            runId: `run-${name}`,
            command: "setsid /bin/sleep 3601 </dev/null >/dev/null 2>&1 & exec /bin/sleep 3602",
            env: {},
            workdir: null,
            maxDurationMs: null
          })
          const isSleep = (seconds: string) => (pid: number) => cmdline(pid).join(" ") === `/bin/sleep ${seconds}`
          const sandbox = yield* eventually(
            Effect.map(sandboxOf(name), (s) =>
              s !== undefined &&
              s.members.some((p) => isSleep("3601")(p.pid)) &&
              s.members.some((p) => isSleep("3602")(p.pid))
                ? s
                : undefined
            ),
            "30 seconds",
            "the run's processes"
          )
          const detached = sandbox.members.find((p) => isSleep("3601")(p.pid))
          const run = sandbox.members.find((p) => isSleep("3602")(p.pid))
          if (detached === undefined || run === undefined) return expect.unreachable()
          expect(detached.sid).toBe(detached.pid)
          expect(detached.sid).not.toBe(run.sid)
          expect(detached.sid).not.toBe(sandbox.root.sid)
          // A namespace sandbox is seen gone by its namespace's init alone (the kernel ends the
          // init last), so this checks that shortcut against every process the sandbox had.
          const init = LocalApi.namespaceInit(sandbox)
          if (mode.isolation === "namespaces") expect(init?.ppid).toBe(sandbox.root.pid)
          else expect(init).toBeNull()
          // Terminate finds a namespace sandbox from its `unshare` (the providerRef) without a
          // scan, and kills only that and the namespace's init: the kernel ends the rest.
          const found = LocalApi.namespaceSandboxAt("local", name, Number(ref.providerRef))
          if (mode.isolation === "namespaces") {
            expect([found?.root.pid, found?.init.pid]).toEqual([sandbox.root.pid, init?.pid])
            expect(LocalApi.namespaceSandboxAt("local", context.newName(), Number(ref.providerRef))).toBeNull()
            expect(LocalApi.namespaceSandboxAt("local", name, process.pid)).toBeNull()
          } else expect(found).toBeNull()

          yield* provider.terminate(ref)
          for (const member of sandbox.members) expect(stillAlive(member)).toBe(false)
          expect(yield* provider.describe(ref)).toBe("gone")
          expect(leftovers(context.controlId).filter((p) => p.instance === name)).toEqual([])
        })
      )

      it.scopedLive("one whose agent is killed is not running any more: gone with its namespace, or stopping until terminated", () =>
        Effect.gen(function* () {
          const provider = yield* LocalProvider.make({ home: context.home, isolation: mode.isolation, forkServer: mode.forkServer })
          const controller = yield* makeFakeController()
          const name = context.newName()
          const { ref, bootstrap } = yield* spawnScoped(provider, controller, name, mode.spec)
          yield* controller.registration(name, "30 seconds")
          yield* controller.send(name, "run", { runId: `run-${name}`, command: "exec /bin/sleep 3603", env: {}, workdir: null, maxDurationMs: null })
          const isRun = (pid: number) => cmdline(pid).join(" ") === "/bin/sleep 3603"
          const sandbox = yield* eventually(
            Effect.map(sandboxOf(name), (s) => (s !== undefined && s.members.some((p) => isRun(p.pid)) ? s : undefined)),
            "30 seconds",
            "the run's process"
          )
          const agent = sandbox.members.find((p) => environ(p.pid).includes(`SKYREPL_AGENT_TOKEN=${bootstrap.token}`))
          if (agent === undefined) return expect.unreachable("no agent in the sandbox")
          process.kill(agent.pid, "SIGKILL")
          // A process group's run outlives its agent, with nothing left to end it: stopping, so
          // a controller ends it, not running, which would have it wait on it.
          const expected = mode.isolation === "namespaces" ? "gone" : "stopping"
          yield* eventually(
            Effect.map(provider.describe(ref), (state) => (state === expected ? state : undefined)),
            "10 seconds",
            `the sandbox to be ${expected}`
          )
          yield* provider.terminate(ref)
          expect(yield* provider.describe(ref)).toBe("gone")
          expect(leftovers(context.controlId).filter((p) => p.instance === name)).toEqual([])
        })
      )

      it.scopedLive("ends itself through the agent's dead-man switch when its controller goes away", () =>
        Effect.gen(function* () {
          const provider = yield* LocalProvider.make({ home: context.home, isolation: mode.isolation, forkServer: mode.forkServer })
          const controllerScope = yield* Scope.make()
          const controller = yield* makeFakeController({ heartbeatIntervalMs: 250, deadmanTimeoutMs: 3_000 }).pipe(
            Scope.extend(controllerScope)
          )
          const name = context.newName()
          const { ref } = yield* spawnScoped(provider, controller, name, mode.spec)
          yield* controller.registration(name, "30 seconds")
          yield* Scope.close(controllerScope, Exit.void)
          yield* eventually(
            Effect.map(provider.describe(ref), (state) => (state === "gone" ? state : undefined)),
            "30 seconds",
            "the dead-man switch to end the sandbox"
          )
        })
      )

      it.scopedLive("outlives the process that spawned it, and a fresh provider with no store finds it", () =>
        Effect.gen(function* () {
          const controller = yield* makeFakeController()
          const provider = yield* LocalProvider.make({ home: context.home, isolation: mode.isolation, forkServer: mode.forkServer })
          for (const after of ["exit", "wait"] as const) {
            const name = context.newName()
            const bootstrap = yield* controller.bootstrap(name)
            // Registered first so a failure below still ends the sandbox.
            yield* Effect.addFinalizer(() => Effect.orDie(provider.terminate({ name, providerRef: null, region: null })))
            const [file, args] = typescriptRunner(fixture("spawn.ts"))
            const request = { home: context.home, spec: mode.spec, name, after, bootstrap, forkServer: mode.forkServer }
            const spawner = yield* Effect.acquireRelease(
              Effect.sync(() =>
                execa(file, args, { env: { SKYREPL_FIXTURE_REQUEST: JSON.stringify(request) }, reject: false })
              ),
              (subprocess) =>
                Effect.promise(async () => {
                  subprocess.kill("SIGKILL")
                  await subprocess
                })
            )
            const line = yield* firstLine(spawner.stdout)
            if (after === "wait") spawner.kill("SIGKILL")
            const finished = yield* Effect.promise(() => spawner)
            if (after === "exit") expect({ exitCode: finished.exitCode, stderr: finished.stderr }).toMatchObject({ exitCode: 0 })
            else expect(finished.signal).toBe("SIGKILL")
            const spawned = Schema.decodeUnknownSync(
              Schema.parseJson(
                Schema.Struct({ providerRef: Schema.String, region: Schema.Null, forkServerPid: Schema.NullOr(Schema.Number) })
              )
            )(line)
            // The fork server ends with the process that started it; the sandbox it forked does not.
            if (mode.forkServer === "never") expect(spawned.forkServerPid).toBeNull()
            else {
              const server = spawned.forkServerPid
              if (server === null) return expect.unreachable("the spawner started no fork server")
              yield* eventually(
                Effect.sync(() => (cmdline(server).join(" ").includes("skyrepl_fork_server.py") ? undefined : true)),
                "10 seconds",
                "the fork server to end with its controller"
              )
            }

            yield* controller.registration(name, "30 seconds")
            const listed = (yield* provider.list()).find((entry) => entry.name === name)
            expect(listed?.providerRef).toBe(spawned.providerRef)
            expect(yield* provider.describe({ name, providerRef: spawned.providerRef, region: null })).toBe("running")
            yield* provider.terminate({ name, providerRef: spawned.providerRef, region: null })
            expect((yield* provider.list()).some((entry) => entry.name === name)).toBe(false)
          }
        }),
        120_000
      )
    })
  }
})

afterAll(() => {
  try {
    expect(leftovers(context.controlId).map((p) => `${p.pid} ${p.instance ?? ""}`)).toEqual([])
  } finally {
    context.cleanupHome()
  }
})
