import { Effect, Exit } from "effect"
import { describe, expect, it } from "vitest"
import { AllocationMachine, InstanceMachine, InstanceState, RunMachine, RunState } from "../src/domain/index.ts"

describe("instance state machine", () => {
  it("follows DESIGN §3's happy path", () => {
    const path = ["requested", "spawning", "booting", "ready", "allocated", "ready", "allocated", "terminating", "terminated"] as const
    for (let i = 1; i < path.length; i++) expect(InstanceMachine.canTransition(path[i - 1]!, path[i]!)).toBe(true)
  })

  it("only terminated is terminal; a failed instance must still be terminated", () => {
    expect(InstanceMachine.terminal).toEqual(["terminated"])
    expect(InstanceMachine.canTransition("failed", "terminating")).toBe(true)
    expect(InstanceMachine.canTransition("failed", "ready")).toBe(false)
  })

  it("refuses skipping ahead and going back", () => {
    expect(InstanceMachine.canTransition("requested", "ready")).toBe(false)
    expect(InstanceMachine.canTransition("terminated", "requested")).toBe(false)
    expect(InstanceMachine.canTransition("terminating", "ready")).toBe(false)
  })

  it("an illegal transition is a typed IllegalTransition", () => {
    const exit = Effect.runSyncExit(InstanceMachine.transition("i1", "terminated", "ready"))
    expect(exit).toEqual(Exit.fail(expect.objectContaining({ _tag: "IllegalTransition", entity: "instance", from: "terminated", to: "ready", id: "i1" })))
  })

  it("knows exactly the states of the schema", () => {
    expect([...InstanceMachine.states].sort()).toEqual([...InstanceState.literals].sort())
  })
})

describe("run state machine", () => {
  it("has the four terminal states", () => {
    expect([...RunMachine.terminal].sort()).toEqual(["cancelled", "failed", "succeeded", "timed_out"])
    expect([...RunMachine.states].sort()).toEqual([...RunState.literals].sort())
  })

  it("a run that never started cannot succeed", () => {
    expect(RunMachine.canTransition("pending", "succeeded")).toBe(false)
    expect(RunMachine.canTransition("running", "succeeded")).toBe(true)
  })
})

describe("allocation state machine", () => {
  it("active → released, once", () => {
    expect(AllocationMachine.canTransition("active", "released")).toBe(true)
    expect(AllocationMachine.canTransition("released", "active")).toBe(false)
  })
})
