import { Effect } from "effect"
import { IllegalTransition } from "../errors.ts"

/** A closed state machine: the transition table is the single source of which moves are legal. */
export interface StateMachine<S extends string> {
  readonly entity: IllegalTransition["entity"]
  readonly states: ReadonlyArray<S>
  readonly terminal: ReadonlyArray<S>
  readonly canTransition: (from: S, to: S) => boolean
  readonly isTerminal: (state: S) => boolean
  readonly transition: (id: string, from: S, to: S) => Effect.Effect<S, IllegalTransition>
}

export const makeStateMachine = <S extends string>(
  entity: IllegalTransition["entity"],
  table: { readonly [K in S]: ReadonlyArray<S> }
): StateMachine<S> => {
  const states = Object.keys(table) as Array<S>
  const terminal = states.filter((s) => table[s].length === 0)
  const canTransition = (from: S, to: S) => table[from].includes(to)
  return {
    entity,
    states,
    terminal,
    canTransition,
    isTerminal: (state) => terminal.includes(state),
    transition: (id, from, to) =>
      canTransition(from, to) ? Effect.succeed(to) : Effect.fail(new IllegalTransition({ entity, id, from, to }))
  }
}
