import { ConfigProvider, Effect, Option } from "effect"
import { describe, expect, it } from "vitest"
import { envSettingFor } from "../src/config.ts"

const read = (env: Record<string, string>, given: unknown) =>
  Effect.runSync(envSettingFor("SKYREPL_X", given).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))))

describe("envSettingFor", () => {
  it("gives a set variable's value, and no problem", () => {
    expect(read({ SKYREPL_X: "v" }, undefined)).toEqual({ value: Option.some("v"), problem: null })
  })

  it("gives nothing for an unset variable, and no problem", () => {
    expect(read({}, undefined)).toEqual({ value: Option.none(), problem: null })
  })

  it("names a variable set but empty (or blank) as a problem when its option was not given", () => {
    expect(read({ SKYREPL_X: "" }, undefined)).toEqual({ value: Option.none(), problem: "SKYREPL_X: must not be empty" })
    expect(read({ SKYREPL_X: "  " }, undefined)).toEqual({ value: Option.none(), problem: "SKYREPL_X: must not be empty" })
  })

  it("leaves an empty variable moot when the option it stands for was given in code", () => {
    expect(read({ SKYREPL_X: "" }, "from code")).toEqual({ value: Option.none(), problem: null })
    // Given as anything at all, even a falsy value the provider then judges itself.
    expect(read({ SKYREPL_X: "" }, 0)).toEqual({ value: Option.none(), problem: null })
  })
})
