import { describe, expect, it } from "@effect/vitest"
import { agentScriptPath, formatInstanceName, InvalidSpec, newControlId, newId, type ProviderService } from "@skyrepl/core"
import { ConfigProvider, Duration, Effect, Layer } from "effect"
import { execFileSync, spawnSync } from "node:child_process"
import { createRequire } from "node:module"
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { gunzipSync } from "node:zlib"
import { AwsProvider, archOfInstanceType, buildUserData, compactAgent, USER_DATA_LIMIT, validSpecForms } from "../src/index.ts"
import { smallestGzip } from "../src/user-data.ts"
import { AwsError, reasonOf, toProviderError } from "../src/errors.ts"
import { isLoopbackUrl, observedState } from "../src/aws-provider.ts"
import { fromSdkError } from "../src/aws-api.ts"
import { endpointShown, regionFromConfigFile } from "../src/options.ts"
import { keyPath } from "../src/setup.ts"

// What needs no AWS at all: specs, the user-data, error classification, configuration, and the
// refusals that must happen before any AWS call.

/** Runs `effect` with exactly these environment variables, none of the test process's. */
const withEnv = (vars: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries({ AWS_CONFIG_FILE: "/nonexistent/aws-config", ...vars }))))

const makeWith = (vars: Record<string, string>, options: Parameters<typeof AwsProvider.make>[0] = {}) =>
  AwsProvider.make(options).pipe(withEnv(vars))

const name = () => formatInstanceName({ controlId: newControlId(), manifestId: newId(), instanceId: newId() })

const bootstrap = (agentUrl: string) => ({ agentUrl, token: "f00d", heartbeatIntervalMs: 1000, deadmanTimeoutMs: 5000, agentScript: agentScriptPath })

describe("specs", () => {
  it("knows Graviton families from the rest", () => {
    const cases: ReadonlyArray<readonly [string, string | null]> = [
      ["t4g.nano", "arm64"],
      ["c8g.large", "arm64"],
      ["c7gn.16xlarge", "arm64"],
      ["im4gn.large", "arm64"],
      ["g5g.xlarge", "arm64"],
      ["x2gd.metal", "arm64"],
      ["a1.medium", "arm64"],
      ["t3.micro", "amd64"],
      ["g4dn.xlarge", "amd64"],
      ["m7i-flex.large", "amd64"],
      ["c6a.metal-48xl", "amd64"],
      ["u-6tb1.112xlarge", "amd64"],
      ["mac2.metal", null],
      ["t3", null],
      ["T3.MICRO", null]
    ]
    for (const [type, arch] of cases) expect([type, archOfInstanceType(type)]).toEqual([type, arch])
  })

  it.effect("an instance type runs noble on it; ubuntu:VERSION:ARCH picks the default type", () =>
    Effect.gen(function* () {
      const provider = yield* makeWith({ AWS_REGION: "eu-west-2" })
      expect(yield* provider.parseSpec("c8g.large")).toEqual({
        provider: "aws",
        canonical: "c8g.large",
        region: "eu-west-2",
        attributes: { instanceType: "c8g.large", distro: "ubuntu", version: "noble", arch: "arm64", spot: "false" }
      })
      expect((yield* provider.parseSpec("ubuntu:jammy:arm64")).attributes).toMatchObject({ instanceType: "t4g.micro", version: "jammy", arch: "arm64" })
      expect((yield* provider.parseSpec(undefined)).attributes).toMatchObject({ instanceType: "t3.micro", version: "noble", arch: "amd64" })
      const spot = yield* provider.parseSpec("t3.micro", { region: "ap-south-1", spot: true })
      expect(spot.region).toBe("ap-south-1")
      expect(spot.attributes["spot"]).toBe("true")
    })
  )

  it.effect("an AMI id (a snapshot) runs that image, on the type given before it or on its architecture's default", () =>
    Effect.gen(function* () {
      const provider = yield* makeWith({ AWS_REGION: "eu-west-2" })
      expect(yield* provider.parseSpec("ami-0123456789abcdef0")).toEqual({
        provider: "aws",
        canonical: "ami-0123456789abcdef0",
        region: "eu-west-2",
        attributes: { image: "ami-0123456789abcdef0", spot: "false" }
      })
      expect((yield* provider.parseSpec("c7g.large:ami-0a11b22c", { spot: true })).attributes).toEqual({
        image: "ami-0a11b22c",
        instanceType: "c7g.large",
        spot: "true"
      })
      for (const [spec, message] of [
        ["ami-xyz", "is not an AMI id"],
        ["ami-0123", "is not an AMI id"],
        ["t3.micro:ami-nothex00", "is not an AMI id"],
        ["mac2.metal:ami-0123456789abcdef0", "is not an instance type SkyREPL can launch"]
      ] as const) {
        const error = yield* Effect.flip(provider.parseSpec(spec))
        expect([spec, error.message]).toEqual([spec, expect.stringContaining(message)])
      }
    })
  )

  it.effect("anything else is InvalidSpec listing the valid forms, including a malformed region", () =>
    Effect.gen(function* () {
      const provider = yield* makeWith({ AWS_REGION: "us-east-1" })
      for (const spec of ["ubuntu:noble", "debian:12:amd64", "ubuntu:noble:x86_64", "ubuntu:trusty:amd64", "xlarge", "mac2.metal"]) {
        const error = yield* Effect.flip(provider.parseSpec(spec))
        expect(error).toBeInstanceOf(InvalidSpec)
        expect(error.validForms).toEqual(validSpecForms)
      }
      const region = yield* Effect.flip(provider.parseSpec("t3.micro", { region: "US East" }))
      expect(region.message).toContain("not an AWS region name")
      // The spec's forms say nothing about a region: none are listed with it.
      expect(region.validForms).toEqual([])
    })
  )
})

describe("user-data", () => {
  const agent = readFileSync(agentScriptPath, "utf8")

  it("ships the agent gzipped under EC2's 16 KB, and starts it to power off, with the token out of its command line", async () => {
    const userData = await buildUserData({ name: name(), bootstrap: bootstrap("https://cp.example.com:8443/x"), agentSource: agent, maxLifetimeSeconds: 86_400 })
    expect(userData.bytes).toBeLessThan(USER_DATA_LIMIT)
    const script = gunzipSync(Buffer.from(userData.base64, "base64")).toString("utf8")
    expect(script).toBe(userData.script)
    expect(script.startsWith("#!/bin/sh\n")).toBe(true)
    expect(script).toContain(compactAgent(agent))
    expect(script).toContain("export SKYREPL_AGENT_ALLOW_POWEROFF=1")
    expect(script).toContain("'--shutdown' 'poweroff'")
    expect(script).toContain("'--url' 'https://cp.example.com:8443/x'")
    expect(script).toContain("export SKYREPL_AGENT_TOKEN='f00d'")
    expect(script.split("\n").filter((l) => l.includes("f00d"))).toEqual(["export SKYREPL_AGENT_TOKEN='f00d'"])
    expect(script).toContain("sleep 86400; end_instance")
    // The shell must accept it.
    execFileSync("/bin/sh", ["-n"], { input: script })
  })

  it("compresses the agent once: launches share its gzip member, and each still inflates to its own script", async () => {
    const first = await buildUserData({ name: name(), bootstrap: bootstrap("https://cp.example.com/a"), agentSource: agent, maxLifetimeSeconds: 60 })
    const second = await buildUserData({ name: name(), bootstrap: { ...bootstrap("https://cp.example.com/b"), token: "beef" }, agentSource: agent, maxLifetimeSeconds: 60 })
    const bytes = (u: { readonly base64: string }) => Buffer.from(u.base64, "base64")
    const [a, b] = [bytes(first), bytes(second)]
    let shared = 0
    while (shared < a.length && a[shared] === b[shared]) shared++
    // The agent's member (~13 KB) is byte for byte the same; only the small second one differs.
    expect(shared).toBeGreaterThan(10_000)
    expect(a.length - shared).toBeLessThan(1_000)
    for (const u of [first, second]) expect(gunzipSync(bytes(u)).toString("utf8")).toBe(u.script)
    expect(second.script).toContain("'--url' 'https://cp.example.com/b'")
    expect(second.script).toContain("export SKYREPL_AGENT_TOKEN='beef'")
    // Another agent is compressed anew, never served from the first one's member.
    const other = await buildUserData({ name: name(), bootstrap: bootstrap("https://cp.example.com/a"), agentSource: `${agent}V2 = 2\n`, maxLifetimeSeconds: 60 })
    expect(gunzipSync(bytes(other)).toString("utf8")).toContain("V2=2\n")
  })

  it("leaves the host process's handlers of unhandled rejections and uncaught exceptions alone", () => {
    // @gfx/zopfli's Emscripten runtime adds process-wide listeners as it loads: one that aborts
    // the process on any unhandled rejection (a program that handles its own then died, exit 7),
    // one that rethrows every uncaught exception. A program that uses the provider keeps its own.
    const script = join(import.meta.dirname, "fixtures", "host-process.ts")
    const [command, args] = process.versions["bun"] !== undefined
      ? [process.execPath, [script]]
      : [process.execPath, [join(dirname(createRequire(import.meta.url).resolve("vite-node")), "..", "vite-node.mjs"), script]]
    const child = spawnSync(command, args, { encoding: "utf8", timeout: 60_000 })
    expect([child.status, child.stdout.split("\n").filter((l) => l !== "")], child.stderr).toEqual([
      0,
      ["listeners: 1,0 -> 1,0", "handled: left to the program's own handler", "still running"]
    ])
  })

  // The tree with docstrings taken out (a body that was only one becomes `pass`).
  const withoutDocstrings = [
    "import ast, sys",
    "tree = ast.parse(sys.stdin.read())",
    "for node in ast.walk(tree):",
    "    body = getattr(node, 'body', None)",
    "    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \\",
    "            and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \\",
    "            and isinstance(body[0].value.value, str):",
    "        node.body = body[1:] or [ast.Pass()]",
    "print(ast.dump(tree))"
  ].join("\n")
  const tree = (source: string) =>
    execFileSync("python3", ["-c", withoutDocstrings], { input: source, maxBuffer: 64 * 2 ** 20 }).toString()
  const quotes = '"'.repeat(3)

  it("changes only what Python does not read: it parses the agent it ships to the same tree", () => {
    const compact = compactAgent(agent)
    expect(compact.length).toBeLessThan(agent.length * 0.6)
    expect(compact).not.toContain(quotes)
    expect(tree(compact)).toBe(tree(agent))
  })

  it("compacts by Python's tokens, never inside a string", () => {
    const cases = [
      // Comments, docstrings and blank lines go; a body that was only a docstring becomes `pass`.
      [`#!/usr/bin/env python3\n${quotes}Module.${quotes}\n\nclass A(Exception):\n    ${quotes}Only this.\n    Two lines.${quotes}\n\ndef f(x):\n    ${quotes}Doc.${quotes}  # trailing\n    y = ${quotes}kept${quotes}\n    return x, y\n`,
        `class A(Exception):\n pass\ndef f(x):\n y=${quotes}kept${quotes}\n return x,y`],
      // Blocks one space deep; a bracketed or continued statement on one line; a block of simple
      // statements on its header's line, a function's own body not.
      ["def g(a,\n      b):\n    if a:\n        return (a +\n                b)\n\n    x = 1 + \\\n        2\n    for i in b:\n        a += i\n        a -= 1\n    return b\n",
        "def g(a,b):\n if a:return(a+b)\n x=1+2\n for i in b:a+=i;a-=1\n return b"],
      // Strings are left exactly as written: what looks like a comment, a continuation or an
      // indented line inside one, escaped quotes, prefixes, and a multi-line string's lines.
      [`TEXT = ${quotes}\n# not a comment\n    indented \\\n${quotes}\nS = 'a # b' "c \\" # d" r'\\'' f"{1 + 2} #"\nB = rb"x" b'\\''\n`,
        `TEXT=${quotes}\n# not a comment\n    indented \\\n${quotes}\nS='a # b'"c \\" # d"r'\\''f"{1 + 2} #"\nB=rb"x"b'\\''`],
      // A space stays only where the tokens on either side would run together.
      ["x = 1 if y else 2\nz = 1 .real\ne = ... .__class__\nw = x - -1\nv = x < -1\nu = y [::-1]\nt = {'a': 1, **k}\nfrom . import m\ndef h(*a, **k) -> int: return a\n",
        "x=1 if y else 2\nz=1 .real\ne=... .__class__\nw=x--1\nv=x<-1\nu=y[::-1]\nt={'a':1,**k}\nfrom.import m\ndef h(*a,**k)->int:return a"],
      // Not docstrings, so they stay: bytes, an f-string, a string after the first statement.
      [`def a():\n    b"bytes"\ndef b(x):\n    f"{x}"\n    return x\ndef c():\n    pass\n    ${quotes}late${quotes}\n`,
        `def a():\n b"bytes"\ndef b(x):\n f"{x}"\n return x\ndef c():\n pass\n ${quotes}late${quotes}`],
      // Tabs, decorators, async functions, nested scopes, else/except chains.
      ["@d\nasync def f():\n\tif x:\n\t\ty()\n\telif z:\n\t\tpass\n\telse:\n\t\ttry:\n\t\t\tw()\n\t\texcept E as e:\n\t\t\traise\n\tclass C:\n\t\tdef m(self): ...\n",
        "@d\nasync def f():\n if x:y()\n elif z:pass\n else:\n  try:w()\n  except E as e:raise\n class C:\n  def m(self):..."]
    ] as const
    for (const [source, shipped] of cases) {
      expect(compactAgent(source)).toBe(shipped)
      expect(tree(shipped)).toBe(tree(source))
    }
    // Source it cannot tokenize is shipped as it is, not guessed at.
    expect(compactAgent("x = 'open\n")).toBe("x = 'open\n")
  })

  it("falls back to zlib's level 9 when Zopfli fails or takes past its time limit: the same bytes, inflated", async () => {
    const data = Buffer.from("echo the agent\n".repeat(1_000), "utf8")
    const failed = await smallestGzip(data, () => Promise.reject(new Error("wasm could not start")), 10_000)
    expect(gunzipSync(failed).equals(data)).toBe(true)
    const thrown = await smallestGzip(data, () => { throw new Error("no module") }, 10_000)
    expect(gunzipSync(thrown).equals(data)).toBe(true)
    // A module that never becomes ready must not hold every AWS launch of the process: this
    // settles at its 50 ms limit (without the limit, it never would, and the test times out).
    const hung = await smallestGzip(data, () => new Promise<Uint8Array>(() => {}), 50)
    expect(gunzipSync(hung).equals(data)).toBe(true)
  })

  it("leaves room in EC2's 16 KB of user-data for the agent to grow", async () => {
    const token = "0123456789abcdef".repeat(3)
    const { bytes } = await buildUserData({ name: name(), bootstrap: { ...bootstrap("http://203.0.113.7:8080"), token }, agentSource: agent, maxLifetimeSeconds: 86_400 })
    // About 1.2 KB were free when this was written, about 840 bytes once the agent became its
    // runs' subreaper, 768 once its main thread slept until a signal; Zopfli for the agent's part
    // then gave back about 690. Below 800 bytes, make the agent smaller or compactAgent better
    // (renaming locals is what is left to it) before the limit is reached.
    expect(USER_DATA_LIMIT - bytes, `user-data is ${bytes} bytes of ${USER_DATA_LIMIT}`).toBeGreaterThan(800)
  })

  it("inflates as cloud-init does to a script that writes the agent Python compiles to the original's tree", async () => {
    const userData = await buildUserData({ name: name(), bootstrap: bootstrap("https://cp.example.com/x"), agentSource: agent, maxLifetimeSeconds: 60 })
    const inflate = "import base64, gzip, sys; sys.stdout.buffer.write(gzip.decompress(base64.b64decode(sys.stdin.read())))"
    const script = execFileSync("python3", ["-c", inflate], { input: userData.base64, maxBuffer: 64 * 2 ** 20 }).toString("utf8")
    expect(script).toBe(userData.script)
    const dir = mkdtempSync(join(tmpdir(), "skyrepl-user-data-"))
    try {
      // The install step only, writing where this test says: the rest would start the agent.
      const install = script.slice(0, script.indexOf("# Starts the agent as")).replaceAll("/opt/skyrepl", dir)
      execFileSync("/bin/sh", ["-c", install])
      const written = join(dir, "skyrepl_agent.py")
      execFileSync("python3", ["-m", "py_compile", written])
      expect(tree(readFileSync(written, "utf8"))).toBe(tree(agent))
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("quotes what it interpolates", async () => {
    const { script } = await buildUserData({ name: name(), bootstrap: bootstrap("http://h:1/a'b$(x)"), agentSource: "print(1)\n", maxLifetimeSeconds: 60 })
    expect(script).toContain(`'http://h:1/a'"'"'b$(x)'`)
    execFileSync("/bin/sh", ["-n"], { input: script })
  })
})

describe("errors", () => {
  const error = (code: string, httpStatus: number | null = 400, operation = "RunInstances") =>
    new AwsError({ operation, code, message: `${code} happened`, region: "us-east-1", httpStatus, requestId: null })

  it("classifies AWS's codes", () => {
    const cases: ReadonlyArray<readonly [AwsError, string]> = [
      [error("InsufficientInstanceCapacity", 500), "capacity"],
      [error("InsufficientHostCapacity", 500), "capacity"],
      [error("RequestLimitExceeded", 503), "throttled"],
      [error("Throttling", 400), "throttled"],
      [error("InternalError", 500), "transient"],
      [error("ServiceUnavailable", 503), "transient"],
      [error("SomethingNew", 502), "transient"],
      [error("ECONNRESET", null), "transient"],
      [error("TimeoutError", null), "transient"],
      [error("UnauthorizedOperation", 403), "auth"],
      [error("AuthFailure", 401), "auth"],
      [error("ExpiredToken", 400), "auth"],
      [error("VcpuLimitExceeded", 400), "quota"],
      [error("MaxSpotInstanceCountExceeded", 400), "quota"],
      [error("InstanceLimitExceeded", 400), "quota"],
      [error("InvalidParameterValue", 400), "invalid-request"],
      [error("InvalidInstanceID.NotFound", 400), "not-found"],
      [error("CredentialsProviderError", null), "unavailable"],
      // A success that cannot be read: worth repeating only for a termination.
      [error("UnknownError", 200, "TerminateInstances"), "transient"],
      [error("DecodeError", null, "TerminateInstances"), "transient"],
      [error("UnknownError", 200, "DescribeInstances"), "internal"],
      [error("DecodeError", null, "DescribeInstances"), "internal"]
    ]
    for (const [e, reason] of cases) expect([e.code, reasonOf(e)]).toEqual([e.code, reason])
  })

  it("takes a network failure's code from either runtime's error: Node's Error, Bun's fetch TypeError", () => {
    const network = (name: string, code: string) => Object.assign(new Error(`connect ${code}`), { name, code })
    for (const thrown of [network("Error", "ECONNRESET"), network("TypeError", "ECONNRESET"), network("TypeError", "EAI_AGAIN"), network("DNSException", "EAI_AGAIN")]) {
      const e = fromSdkError("DescribeInstances", "us-east-1", thrown)
      expect([e.code, reasonOf(e)]).toEqual([thrown.code, "transient"])
    }
    // A service error's own name still wins over any `code` beside it.
    const service = Object.assign(new Error("denied"), { name: "UnauthorizedOperation", code: "ECONNRESET" })
    expect(fromSdkError("RunInstances", "us-east-1", service).code).toBe("UnauthorizedOperation")
    expect(fromSdkError("RunInstances", "us-east-1", new TypeError("x")).code).toBe("TypeError")
  })

  it("a host name that does not exist (a misspelt region) fails at once, naming the region, on either runtime's error", () => {
    for (const name of ["Error", "TypeError", "DNSException"]) {
      const thrown = Object.assign(new Error("getaddrinfo ENOTFOUND ec2.xx-nowhere-9.amazonaws.com"), { name, code: "ENOTFOUND" })
      const e = toProviderError(fromSdkError("DescribeInstances", "xx-nowhere-9", thrown))
      expect([e.reason, e.retryable]).toEqual(["unavailable", false])
      expect(e.message).toBe(
        'DescribeInstances in xx-nowhere-9 failed: getaddrinfo ENOTFOUND ec2.xx-nowhere-9.amazonaws.com. That name does not exist: check the region ("xx-nowhere-9") and SKYREPL_AWS_ENDPOINT if set.'
      )
    }
  })

  it("says which IAM action was refused, and how to raise a quota", () => {
    const refused = toProviderError(error("UnauthorizedOperation", 403, "CreateImage"), { identity: "arn:aws:iam::1:user/ci" })
    expect(refused.message).toContain("AWS refused ec2:CreateImage for arn:aws:iam::1:user/ci")
    expect(refused.message).toContain("allow ec2:CreateImage and ec2:CreateTags")
    expect(refused.retryable).toBe(false)
    const spot = toProviderError(error("MaxSpotInstanceCountExceeded"), { spot: true })
    expect(spot.message).toContain("L-34B43A08")
    expect(toProviderError(error("InsufficientInstanceCapacity", 500)).retryable).toBe(true)
  })

  it("maps EC2 states: shutting-down is already gone; stopped still exists", () => {
    expect(["pending", "running", "stopping", "stopped", "shutting-down", "terminated"].map(observedState)).toEqual([
      "pending",
      "running",
      "stopping",
      "stopping",
      "gone",
      "gone"
    ])
  })
})

describe("configuration", () => {
  it("reads the region of a profile from the shared config file", () => {
    const text = "[default]\nregion = us-west-1\n\n[profile dev]\n# comment\noutput=json\nregion=eu-central-1\n[sso-session x]\nsso_region = us-east-2\n"
    expect(regionFromConfigFile(text, "default")).toBe("us-west-1")
    expect(regionFromConfigFile(text, "dev")).toBe("eu-central-1")
    expect(regionFromConfigFile(text, "missing")).toBeNull()
  })

  it.effect("region: the option, then AWS_REGION, then AWS_DEFAULT_REGION, then the profile in AWS_CONFIG_FILE", () =>
    Effect.gen(function* () {
      const dir = mkdtempSync(join(tmpdir(), "skyrepl-aws-config-"))
      const file = join(dir, "config")
      writeFileSync(file, "[profile dev]\nregion = eu-north-1\n")
      const region = (vars: Record<string, string>, option?: string) =>
        Effect.map(makeWith(vars, option === undefined ? {} : { region: option }), (p) => p.parseSpec(undefined)).pipe(
          Effect.flatten,
          Effect.map((s) => s.region)
        )
      expect(yield* region({ AWS_CONFIG_FILE: file, AWS_PROFILE: "dev" })).toBe("eu-north-1")
      expect(yield* region({ AWS_CONFIG_FILE: file, AWS_PROFILE: "dev", AWS_DEFAULT_REGION: "sa-east-1" })).toBe("sa-east-1")
      expect(yield* region({ AWS_DEFAULT_REGION: "sa-east-1", AWS_REGION: "ca-central-1" })).toBe("ca-central-1")
      expect(yield* region({ AWS_REGION: "ca-central-1" }, "me-south-1")).toBe("me-south-1")
      expect(yield* region({})).toBeNull()
      rmSync(dir, { recursive: true, force: true })
    })
  )

  it.effect("building the layer never fails; a bad setting fails every AWS call naming the variable", () =>
    Effect.gen(function* () {
      const provider = yield* makeWith({ AWS_REGION: "us-east-1", SKYREPL_AWS_ENDPOINT: "localhost:4566", SKYREPL_AWS_CAPACITY_BACKOFF: "30" })
      const error = yield* Effect.flip(provider.list())
      expect(error.reason).toBe("invalid-request")
      expect(error.message).toContain("SKYREPL_AWS_ENDPOINT")
      expect(error.message).toContain("SKYREPL_AWS_CAPACITY_BACKOFF")
      // Specs need no AWS and still parse.
      expect((yield* provider.parseSpec("t3.micro")).canonical).toBe("t3.micro")
      const built = yield* Effect.scoped(Layer.build(AwsProvider.layer({ region: "not a region" })))
      expect(built).toBeDefined()
    })
  )

  it.effect("an endpoint's userinfo is in no key file name and no message; distinct endpoints keep distinct keys", () =>
    Effect.gen(function* () {
      expect(keyPath("/h", "us-east-1", null)).toBe("/h/keys/aws-us-east-1.pem")
      // Names of endpoints without userinfo are those earlier versions wrote.
      expect(keyPath("/h", "us-east-1", "http://127.0.0.1:4566")).toBe("/h/keys/aws-us-east-1@127.0.0.1_4566.pem")
      expect(keyPath("/h", "us-east-1", "http://user:s3cret@127.0.0.1:4566")).toBe("/h/keys/aws-us-east-1@127.0.0.1_4566.pem")
      expect(keyPath("/h", "us-east-1", "https://tok%40en@emu.example/ec2")).toBe("/h/keys/aws-us-east-1@emu.example_ec2.pem")
      const distinct = ["http://127.0.0.1:4566", "http://127.0.0.1:4567", "http://localhost:4566", "http://emu.example/a", "http://emu.example/b"]
      expect(new Set(distinct.map((e) => keyPath("/h", "us-east-1", e))).size).toBe(distinct.length)
      expect(endpointShown("http://a:b@c@host:1/p")).toBe("http://host:1/p")
      expect(endpointShown("http://user:pa/ss@host:x")).toBe("http://host:x")
      const provider = yield* makeWith({ AWS_REGION: "us-east-1", SKYREPL_AWS_ENDPOINT: "ftp://user:s3cret@host" })
      const error = yield* Effect.flip(provider.list())
      expect(error.message).toContain('SKYREPL_AWS_ENDPOINT: "ftp://host" is not an http(s) URL')
      expect(error.message).not.toContain("s3cret")
    })
  )

  it.effect("options from plain JavaScript that are no object, or name an option there is not, are its configuration problem, not a TypeError at launch", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [null, "AwsProvider options must be an object, not null"],
        ["us-east-1", 'AwsProvider options must be an object, not "us-east-1"'],
        [{ regoin: "us-east-1" }, '"regoin" is not one of the AwsProvider options (region, regions, endpoint,']
      ]
      for (const [options, said] of cases) {
        // A cast, as plain JavaScript would pass it.
        const provider = yield* makeWith({ AWS_REGION: "us-east-1" }, options as Parameters<typeof AwsProvider.make>[0])
        expect(provider.configurationProblem).toContain(said)
        const error = yield* Effect.flip(provider.list())
        expect(error.message).toContain(said)
      }
    })
  )

  it.effect("an instance's longest life is from 1m to 365d, whether set by variable or in code, and never infinite", () =>
    Effect.gen(function* () {
      const refused = (vars: Record<string, string>, options: Parameters<typeof AwsProvider.make>[0] = {}) =>
        Effect.flatMap(makeWith({ AWS_REGION: "us-east-1", ...vars }, options), (provider) => Effect.flip(provider.list()))
      const short = yield* refused({ SKYREPL_AWS_MAX_LIFETIME: "30s" })
      expect([short.reason, short.message]).toEqual(["invalid-request", expect.stringContaining("SKYREPL_AWS_MAX_LIFETIME: must be from 1m to 365d, not 30s")])
      // No date is that far, and the instance's own clock would never end it.
      const endless = yield* refused({ SKYREPL_AWS_MAX_LIFETIME: `${"9".repeat(400)}h` })
      expect(endless.message).toContain(`SKYREPL_AWS_MAX_LIFETIME: invalid duration "${"9".repeat(400)}h": too long to count in milliseconds`)
      const given = yield* refused({ SKYREPL_AWS_MAX_LIFETIME: "2h" }, { maxLifetime: Duration.infinity })
      expect(given.message).toContain("the maxLifetime option: Duration Infinity is not a finite duration")
      expect(given.message).not.toContain("SKYREPL_AWS_MAX_LIFETIME")
    })
  )

  it.effect("duration options take the CLI's forms too, and one in no form is a configuration problem, not a throw from the layer", () =>
    Effect.gen(function* () {
      const problemOf = (options: Parameters<typeof AwsProvider.make>[0]) =>
        Effect.map(Effect.exit(makeWith({ AWS_REGION: "us-east-1" }, options)), (exit) =>
          exit._tag === "Success" ? (exit.value.configurationProblem ?? "none") : `the layer failed: ${String(exit.cause)}`
        )
      // Duration.decode threw "Invalid DurationInput" for each as the layer was built.
      expect(yield* problemOf({ maxLifetime: "2h", requestTimeout: "30s", visibilityTimeout: "1m", amiCacheTtl: "1h", capacityBackoff: "10s" })).toBe("none")
      // From plain JavaScript, or behind a cast.
      expect(yield* problemOf({ requestTimeout: "soon" } as unknown as Parameters<typeof AwsProvider.make>[0])).toBe(
        'the requestTimeout option: "soon" is not a duration (give e.g. "30s", "5m", Duration.minutes(5) or a number of milliseconds)'
      )
      // 0 is a meaning for these three (no reuse, no pause, no wait); a request timeout of 0 failed every call.
      expect(yield* problemOf({ amiCacheTtl: 0, capacityBackoff: 0, visibilityTimeout: 0 })).toBe("none")
      expect(yield* problemOf({ requestTimeout: 0 })).toBe("the requestTimeout option: 0 is no time at all; give at least 1ms")
      expect(yield* problemOf({ requestTimeout: 30n } as unknown as Parameters<typeof AwsProvider.make>[0])).toMatch(/^the requestTimeout option: 30n is a bigint, which Effect reads as nanoseconds/)
    })
  )

  it.effect("capacityRetries is a whole number, 0 or more: NaN or Infinity retried a launch for ever", () =>
    Effect.gen(function* () {
      const problemOf = (capacityRetries: number) =>
        Effect.map(Effect.exit(makeWith({ AWS_REGION: "us-east-1" }, { capacityRetries })), (exit) =>
          exit._tag === "Success" ? (exit.value.configurationProblem ?? "none") : `the layer failed: ${String(exit.cause)}`
        )
      expect([yield* problemOf(0), yield* problemOf(5)]).toEqual(["none", "none"])
      expect([yield* problemOf(Number.NaN), yield* problemOf(Number.POSITIVE_INFINITY), yield* problemOf(-1), yield* problemOf(2.5)]).toEqual([
        "capacityRetries must be a whole number, 0 or more, not NaN",
        "capacityRetries must be a whole number, 0 or more, not Infinity",
        "capacityRetries must be a whole number, 0 or more, not -1",
        "capacityRetries must be a whole number, 0 or more, not 2.5"
      ])
    })
  )

  it.effect("with no region anywhere, list and spawn are unavailable (a sweep skips AWS)", () =>
    Effect.gen(function* () {
      const provider: ProviderService = yield* makeWith({})
      expect((yield* Effect.flip(provider.list())).reason).toBe("unavailable")
      const spec = yield* provider.parseSpec(undefined)
      const error = yield* Effect.flip(provider.spawn(name(), spec, bootstrap("https://cp.example.com")))
      expect(error.reason).toBe("unavailable")
      expect(error.message).toContain("AWS_REGION")
    })
  )
})

describe("reachability", () => {
  it("recognises loopback URLs", () => {
    for (const url of ["http://127.0.0.1:80", "http://localhost:1", "http://[::1]:2", "http://0.0.0.0:3", "http://127.1.2.3", "http://app.localhost:4"]) {
      expect([url, isLoopbackUrl(url)]).toEqual([url, true])
    }
    for (const url of ["http://10.0.0.5:80", "https://cp.example.com", "http://192.168.1.2:9"]) expect([url, isLoopbackUrl(url)]).toEqual([url, false])
  })

  it.effect("against real AWS, a loopback agent URL fails the launch before any AWS call", () =>
    Effect.gen(function* () {
      const provider = yield* makeWith({ AWS_REGION: "us-east-1" }, { credentials: { accessKeyId: "AKIAEXAMPLE", secretAccessKey: "x" } })
      const spec = yield* provider.parseSpec(undefined)
      const error = yield* Effect.flip(provider.spawn(name(), spec, bootstrap("http://127.0.0.1:41234")))
      expect(error.reason).toBe("invalid-request")
      expect(error.message).toContain("loopback")
      expect(error.message).toContain("nothing was launched")
      // No AWS call happened, so no error from AWS either.
      expect(error.cause).toBeUndefined()
    })
  )
})

describe("packaging", () => {
  it("imports the AWS SDK only dynamically (the CLI builds this provider for every command)", () => {
    const dir = join(import.meta.dirname, "..", "src")
    for (const file of readdirSync(dir).filter((f) => f.endsWith(".ts"))) {
      const text = readFileSync(join(dir, file), "utf8")
      const staticImports = text.split("\n").filter((l) => /^\s*import\s+(?!type\b).*["']@aws-sdk\//.test(l) || /^\s*export\s+(?!type\b).*from\s+["']@aws-sdk\//.test(l))
      expect([file, staticImports]).toEqual([file, []])
    }
  })
})
