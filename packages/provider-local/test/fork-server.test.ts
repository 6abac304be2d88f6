import type { Bootstrap } from "@skyrepl/core"
import { makeFakeController } from "@skyrepl/core/testing"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type ForkRequest, type ForkServer, makeForkServer } from "../src/fork-server.ts"
import { LocalApi, LocalProvider } from "../src/index.ts"
import { cmdline, eventually, leftovers, makeTestContext, sandboxOf } from "./helpers.ts"

const context = makeTestContext()
const dir = mkdtempSync(join(tmpdir(), "skyrepl-fork-server-test-"))
const python = "/usr/bin/python3"

/**
 * A stand-in for the agent's fork server that behaves as `FAKE_MODE` says once it has a request:
 * answers a pid, an error, another request's id or garbage, or exits without answering.
 */
const fake = join(dir, "fake-server.py")
writeFileSync(
  fake,
  [
    "import json, os, sys",
    "mode = os.environ['FAKE_MODE']",
    "print(json.dumps({'ready': True, 'room': int(os.environ.get('FAKE_ROOM', '4096'))}), flush=True)",
    "for line in sys.stdin:",
    "    request = dict(json.loads(line.split(' ', 1)[1]), id=int(line.split(' ', 1)[0]))",
    "    if mode == 'exit': sys.exit(0)",
    "    if mode == 'pid': print(json.dumps({'id': request['id'], 'pid': 4000 + request['id']}), flush=True)",
    "    if mode == 'error': print(json.dumps({'id': request['id'], 'error': 'OSError: no fork today'}), flush=True)",
    "    if mode == 'wrong-id': print(json.dumps({'id': request['id'] + 1, 'pid': 1}), flush=True)",
    "    if mode == 'garbage': print('not json', flush=True)",
    "    if mode == 'silent': os.kill(os.getpid(), 19)",
    ""
  ].join("\n")
)
const agent = { python, source: fake, path: fake, server: fake }

const request = (env: Record<string, string> = { A: "1" }): ForkRequest => ({
  name: "repl-x",
  argv: [],
  env,
  cwd: dir,
  console: join(dir, "console.log"),
  namespaces: "none"
})

const withServer = <A, E>(
  mode: string,
  serverMode: "auto" | "always",
  use: (server: ForkServer) => Effect.Effect<A, E>,
  answerTimeout?: Duration.DurationInput
): Effect.Effect<A, E> =>
  Effect.acquireUseRelease(
    Effect.sync(() => makeForkServer({ PATH: "/usr/bin:/bin", FAKE_MODE: mode }, join(dir, "server.log"), serverMode, answerTimeout)),
    use,
    (server) => server.close
  )

describe("the fork server's client", () => {
  it.live("in mode auto, the first spawn execs, the second starts the server, later ones fork", () =>
    withServer("pid", "auto", (server) =>
      Effect.gen(function* () {
        expect(yield* server.fork(agent, request())).toBeNull()
        expect(yield* server.fork(agent, request())).toBeNull()
        const pid = yield* eventually(
          Effect.map(server.fork(agent, request()), (p) => p ?? undefined),
          "10 seconds",
          "the server to be ready"
        )
        expect(pid).toBeGreaterThan(4000)
        expect(yield* server.fork(agent, request())).toBe(pid + 1)
      })
    )
  )

  it.live("in mode always, the first spawn waits for the server and forks", () =>
    withServer("pid", "always", (server) =>
      Effect.gen(function* () {
        expect(yield* server.fork(agent, request())).toBe(4001)
      })
    )
  )

  it.live("leaves to exec what it cannot fork: another agent, or variables beyond its room", () =>
    withServer("pid", "always", (server) =>
      Effect.gen(function* () {
        expect(yield* server.fork(agent, request())).toBe(4001)
        expect(yield* server.fork({ ...agent, source: "/another/agent.py" }, request())).toBeNull()
        expect(yield* server.fork({ ...agent, python: "/usr/bin/env" }, request())).toBeNull()
        expect(yield* server.fork(agent, request({ BIG: "x".repeat(8192) }))).toBeNull()
        // None of those reached the server: the next request has the next id.
        expect(yield* server.fork(agent, request())).toBe(4002)
      })
    )
  )

  it.live("a server that stops answering (here: stopped) is killed at the answer time limit, and its request fails", () =>
    withServer(
      "silent",
      "always",
      (server) =>
        Effect.gen(function* () {
          const started = Date.now()
          const error = yield* Effect.flip(server.fork(agent, request()))
          expect([error._tag, error.reason]).toEqual(["LocalApiError", "transient"])
          expect(error.message).toMatch(/did not answer within 1s; killed/)
          expect(Date.now() - started).toBeLessThan(5_000)
        }),
      "1 second"
    )
  )

  for (const [mode, message] of [
    ["exit", /the fork server exited/],
    ["error", /could not fork OSError: no fork today/],
    ["wrong-id", /answered request 2 out of turn/],
    ["garbage", /wrote a line it should not have: not json/]
  ] as const) {
    it.live(`fails a request the server took and did not answer with a pid (${mode})`, () =>
      withServer(mode, "always", (server) =>
        Effect.gen(function* () {
          const error = yield* Effect.flip(server.fork(agent, request()))
          expect([error._tag, error.reason]).toEqual(["LocalApiError", "transient"])
          expect(error.message).toMatch(message)
        })
      )
    )
  }

  it.live("a server that cannot start, or is not there, leaves every spawn to exec", () =>
    Effect.acquireUseRelease(
      Effect.sync(() => makeForkServer({ FAKE_MODE: "pid" }, join(dir, "server.log"), "always")),
      (server) =>
        Effect.gen(function* () {
          const missing = { python: "/nonexistent/python3", source: fake, path: fake, server: fake }
          expect(yield* server.fork(missing, request())).toBeNull()
          expect(yield* server.fork(missing, request())).toBeNull()
          // Nor does one whose script is not beside the agent.
          expect(yield* server.fork({ ...agent, server: join(dir, "no-such-server.py") }, request())).toBeNull()
        }),
      (server) => server.close
    )
  )

  it.live("close ends the server", () =>
    withServer("pid", "always", (server) =>
      Effect.gen(function* () {
        expect(yield* server.fork(agent, request())).toBe(4001)
        const running = LocalApi.scanProcesses.pipe(
          Effect.map((ps) => ps.filter((p) => p.ppid === process.pid && cmdline(p.pid).includes(fake)))
        )
        expect((yield* running).length).toBe(1)
        yield* server.close
        yield* eventually(
          Effect.map(running, (ps) => (ps.filter(LocalApi.isLive).length === 0 ? true : undefined)),
          "10 seconds",
          "the server to exit"
        )
        expect(yield* server.fork(agent, request())).toBeNull()
      })
    )
  )
})

describe("a sandbox whose fork server failed", () => {
  it.scopedLive("is exec'd instead, once whatever the server may have started under its name is gone", () =>
    Effect.gen(function* () {
      const controller = yield* makeFakeController()
      const name = context.newName()
      const bootstrap: Bootstrap = yield* controller.bootstrap(name)
      const failing: ForkServer = {
        fork: () => Effect.fail(new LocalApi.LocalApiError({ operation: "spawn", reason: "transient", message: "gone" })),
        close: Effect.void
      }
      const paths = LocalApi.instancePaths(join(context.home, "local", "instances"), name)
      yield* Effect.addFinalizer(() => Effect.ignore(LocalApi.terminateSandbox("local", name, "10 seconds")))
      const pid = yield* LocalApi.startSandbox(
        {
          provider: "local",
          name,
          paths,
          namespaces: null,
          python,
          agentScript: bootstrap.agentScript,
          agentArgs: ["--url", bootstrap.agentUrl, "--instance", name, "--workdir", paths.workdir],
          secretEnv: { SKYREPL_AGENT_TOKEN: bootstrap.token }
        },
        failing
      )
      const registration = yield* controller.registration(name, "30 seconds")
      expect(registration.pid).toBe(pid)
      expect(readFileSync(`/proc/${pid}/comm`, "utf8").trim()).toBe("python3")
      expect((yield* sandboxOf(name))?.root.pid).toBe(pid)
    })
  )

  it.scopedLive("a provider whose fork server was killed goes on starting sandboxes", () =>
    Effect.gen(function* () {
      const provider = yield* LocalProvider.make({ home: context.home, forkServer: "always" })
      const controller = yield* makeFakeController()
      const spec = yield* provider.parseSpec("sandbox")
      const servers = () =>
        Effect.map(LocalApi.scanProcesses, (ps) =>
          ps.filter((p) => p.ppid === process.pid && LocalApi.isLive(p) && cmdline(p.pid).join(" ").includes("skyrepl_fork_server.py"))
        )
      for (let i = 0; i < 3; i++) {
        const name = context.newName()
        yield* Effect.acquireRelease(provider.spawn(name, spec, yield* controller.bootstrap(name)), () =>
          Effect.orDie(provider.terminate({ name, providerRef: null, region: null }))
        )
        yield* controller.registration(name, "30 seconds")
        for (const server of yield* servers()) process.kill(server.pid, "SIGKILL")
      }
    })
  )
})

afterAll(() => {
  try {
    expect(leftovers(context.controlId).map((p) => `${p.pid} ${p.instance ?? ""}`)).toEqual([])
  } finally {
    context.cleanupHome()
    rmSync(dir, { recursive: true, force: true })
  }
})
