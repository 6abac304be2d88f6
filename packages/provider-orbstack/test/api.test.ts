import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Option } from "effect"
import { execa } from "execa"
import { afterAll } from "vitest"
import { agentUrlFor, bootstrapScript, OrbStackApi, shutdownCommand } from "../src/index.ts"
import { shellQuote } from "../src/bootstrap.ts"
import { emulatorPath, makeEmulator } from "./helpers.ts"

const emulator = makeEmulator()
const orbctl = OrbStackApi.makeOrbctl({ command: emulatorPath, env: emulator.env, timeout: Duration.seconds(30) })

afterAll(() => emulator.dispose())

describe("orbctl output, decoded", () => {
  it.live("version, list and info as OrbStack prints them", () =>
    Effect.gen(function* () {
      expect(yield* orbctl.version).toMatch(/^\d+\.\d+\.\d+$/)
      expect(OrbStackApi.parseVersion("Version: 1.7.0 (1070000)\nCommit: c5439c5 (v1.7.0)\n")).toBe("1.7.0")
      const name = emulator.newName()
      yield* orbctl.create(name, { distro: "ubuntu", version: "jammy", arch: "amd64" })
      const info = yield* orbctl.info(name)
      expect(Option.isSome(info)).toBe(true)
      if (Option.isNone(info)) return
      expect(info.value.record).toMatchObject({ name, state: "running", image: { distro: "ubuntu", version: "jammy", arch: "amd64" } })
      expect(info.value.ip4).toMatch(/^198\.19\.249\.\d+$/)
      const listed = yield* orbctl.list
      expect(listed.find((m) => m.name === name)?.id).toBe(info.value.record.id)
      expect(yield* orbctl.stop(name)).toBe(true)
      expect(Option.map(yield* orbctl.info(name), (i) => [i.record.state, i.ip4])).toEqual(Option.some(["stopped", ""]))
      expect(yield* orbctl.delete(name)).toBe(true)
      expect(yield* orbctl.info(name)).toEqual(Option.none())
      expect(yield* orbctl.stop(name)).toBe(false)
      expect(yield* orbctl.delete(name)).toBe(false)
    })
  )

  it.effect("states: running is running, stopped and stopping are stopping, the rest are on their way", () =>
    Effect.sync(() => {
      expect(OrbStackApi.observedState("running")).toBe("running")
      expect(OrbStackApi.observedState("stopped")).toBe("stopping")
      expect(OrbStackApi.observedState("stopping")).toBe("stopping")
      expect(OrbStackApi.observedState("deleting")).toBe("stopping")
      expect(OrbStackApi.observedState("starting")).toBe("pending")
      expect(OrbStackApi.observedState("creating")).toBe("pending")
    })
  )

  it.effect("failures are classified by what orbctl said", () =>
    Effect.sync(() => {
      const failed = (stderr: string) => ({ exitCode: 1, stdout: "", stderr })
      expect(OrbStackApi.classify("info", "x", failed("[-32602] no machine found: 'x'")).reason).toBe("not-found")
      expect(OrbStackApi.classify("info", "x", failed("machine not found: x")).reason).toBe("not-found")
      const ip = OrbStackApi.classify("create", "x", failed("[-32098] create 'x': setup: machine didn't start in 30s (missing IP address)"))
      expect(ip.reason).toBe("quota")
      expect(ip.retryable).toBe(false)
      expect(ip.message).toContain("docs/providers/orbstack.md#ip-address-exhaustion")
      expect(OrbStackApi.classify("create", "x", failed("[-32098] create 'x': machine already exists")).reason).toBe("invalid-request")
      expect(OrbStackApi.classify("create", "x", failed("fetch index: dial tcp 1.2.3.4:443: connect: connection refused")).retryable).toBe(true)
      expect(OrbStackApi.classify("create", "x", failed("something odd")).reason).toBe("internal")
    })
  )

  it.live("an unexpected output is an error, not a guess", () =>
    Effect.gen(function* () {
      const liar = OrbStackApi.makeOrbctl({ command: "/bin/echo", env: {}, timeout: Duration.seconds(5) })
      const error = yield* Effect.flip(liar.list)
      expect(error.reason).toBe("internal")
      expect(error.message).toContain("unexpected")
      // Without a name, `orbctl stop` would stop OrbStack and every machine: never sent.
      expect((yield* Effect.flip(orbctl.stop(""))).reason).toBe("invalid-request")
    })
  )
})

describe("the agent's URL from inside a machine", () => {
  it("loopback becomes host.orb.internal; other hosts are kept", () => {
    expect(agentUrlFor("http://127.0.0.1:41234", "host.orb.internal")).toBe("http://host.orb.internal:41234")
    expect(agentUrlFor("http://localhost:8080/prefix", "host.orb.internal")).toBe("http://host.orb.internal:8080/prefix")
    expect(agentUrlFor("http://[::1]:9000", "mac.local")).toBe("http://mac.local:9000")
    expect(agentUrlFor("https://skyrepl.example.com/hub", "host.orb.internal")).toBe("https://skyrepl.example.com/hub")
    expect(agentUrlFor("http://192.168.1.20:4000", "host.orb.internal")).toBe("http://192.168.1.20:4000")
  })
})

describe("the bootstrap script", () => {
  const script = bootstrapScript({
    name: "repl-aaaaaaaa-bbbbbbbbbbbbbb-cccccccccccccc",
    agentUrl: "http://host.orb.internal:1234",
    directUrl: "http://127.0.0.1:1234",
    token: "tok'en",
    heartbeatIntervalMs: 250,
    deadmanTimeoutMs: 10_000,
    agent: Buffer.from("print('agent')\n")
  })

  it("is valid sh, logs to /tmp/bootstrap.log and starts the agent detached", async () => {
    expect((await execa("sh", ["-n"], { input: script, reject: false })).exitCode).toBe(0)
    expect(script).toContain("exec 3>&2 >>/tmp/bootstrap.log 2>&1")
    expect(script).toContain("setsid")
    expect(script).toContain("'--heartbeat-interval' '0.25' '--deadman-timeout' '10'")
    expect(script).toContain("url='http://host.orb.internal:1234'")
    expect(script).toContain(`--url "$url"`)
    expect(script).toContain(`SKYREPL_AGENT_TOKEN='tok'\\''en'`)
  })

  it("never powers a machine off: the agent stops its machine through orbctl", () => {
    expect(shutdownCommand("repl-x")).toBe("command:orbctl stop 'repl-x' >/dev/null 2>&1 || mac orbctl stop 'repl-x'")
    expect(script).toContain(`'--shutdown' ${shellQuote(shutdownCommand("repl-aaaaaaaa-bbbbbbbbbbbbbb-cccccccccccccc"))}`)
    expect(script).toContain("unset SKYREPL_AGENT_ALLOW_POWEROFF")
    expect(script).not.toMatch(/\bpoweroff\b|shutdown -h|\bhalt\b|\breboot\b/)
  })

  it("quotes every word for sh", async () => {
    for (const word of ["plain", "it's", "$HOME", "a b", "`x`", "\\", ""]) {
      const echoed = await execa("sh", ["-c", `printf %s ${shellQuote(word)}`])
      expect(echoed.stdout).toBe(word)
    }
  })
})
