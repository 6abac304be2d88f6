import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { OrbStackProvider, parseSpec, validSpecForms } from "../src/index.ts"

const canonical = (spec: string | undefined, arch: "arm64" | "amd64" = "arm64") =>
  Effect.map(parseSpec(spec, {}, arch), (parsed) => parsed.canonical)

describe("orbstack spec distro:version:arch", () => {
  it.effect("defaults: ubuntu, noble, and the Mac's own architecture", () =>
    Effect.gen(function* () {
      expect(yield* canonical(undefined, "arm64")).toBe("ubuntu:noble:arm64")
      expect(yield* canonical("", "amd64")).toBe("ubuntu:noble:amd64")
      expect(yield* canonical("ubuntu", "arm64")).toBe("ubuntu:noble:arm64")
      expect(yield* canonical("ubuntu:jammy", "amd64")).toBe("ubuntu:jammy:amd64")
    })
  )

  it.effect("versions by codename or number; the canonical form uses the codename", () =>
    Effect.gen(function* () {
      for (const [version, codename] of [
        ["noble", "noble"],
        ["24.04", "noble"],
        ["jammy", "jammy"],
        ["22.04", "jammy"],
        ["focal", "focal"],
        ["20.04", "focal"]
      ] as const) {
        expect(yield* canonical(`ubuntu:${version}:amd64`)).toBe(`ubuntu:${codename}:amd64`)
      }
      const parsed = yield* parseSpec("ubuntu:22.04:arm64")
      expect(parsed).toEqual({
        provider: "orbstack",
        canonical: "ubuntu:jammy:arm64",
        region: null,
        attributes: { distro: "ubuntu", version: "jammy", release: "22.04", arch: "arm64" }
      })
    })
  )

  it.effect("anything else is InvalidSpec listing the valid forms", () =>
    Effect.gen(function* () {
      for (const spec of ["debian", "debian:bookworm", "ubuntu:bionic", "ubuntu:noble:x86_64", "ubuntu:noble:aarch64", "ubuntu:noble:arm64:big", "ubuntu::arm64", "Ubuntu", "ubuntu:NOBLE"]) {
        const error = yield* Effect.flip(parseSpec(spec))
        expect(error._tag).toBe("InvalidSpec")
        expect(error.provider).toBe("orbstack")
        expect(error.validForms).toEqual(validSpecForms)
        expect(error.message.length).toBeGreaterThan(0)
      }
      expect(validSpecForms.join("\n")).toMatch(/noble.*24\.04/)
      expect(validSpecForms.join("\n")).toMatch(/jammy.*22\.04/)
      expect(validSpecForms.join("\n")).toMatch(/focal.*20\.04/)
      expect(validSpecForms.join("\n")).toMatch(/arm64.*amd64/)
      expect((yield* Effect.flip(parseSpec("ubuntu:bionic"))).message).toContain("bionic")
      expect((yield* Effect.flip(parseSpec("ubuntu:noble:x86_64"))).message).toContain("x86_64")
    })
  )

  it.effect("no regions and no spot", () =>
    Effect.gen(function* () {
      expect((yield* Effect.flip(parseSpec("ubuntu", { region: "eu-west-1" }))).message).toContain("no regions")
      expect((yield* Effect.flip(parseSpec(undefined, { spot: true }))).message).toContain("spot")
      expect((yield* parseSpec("ubuntu", { spot: false })).canonical).toBe("ubuntu:noble:arm64")
    })
  )

  it.effect("the provider parses without OrbStack installed, and declares what it offers", () =>
    Effect.gen(function* () {
      const provider = yield* OrbStackProvider.make({ orbctl: "/nonexistent/orbctl", defaultArch: "amd64" })
      expect((yield* provider.parseSpec(undefined)).canonical).toBe("ubuntu:noble:amd64")
      expect(provider.id).toBe("orbstack")
      expect(provider.capabilities).toEqual({ isolation: "vm", spot: false, snapshots: true, regions: false, warmPool: false, ssh: false })
      expect(provider.snapshots).toBeDefined()
    })
  )
})
