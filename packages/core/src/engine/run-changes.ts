import { Effect, Queue, type Scope } from "effect"

/**
 * Signals, per run, that a run's output or state changed in this engine: what wakes `attach`
 * readers without a read of the store. A reader hears of its own run only. One broadcast of
 * every run's changes woke every reader for every change, and with 200 runs launched at once
 * and read, those wake-ups were about half of the controller's CPU (bench B3).
 */
export interface RunChanges {
  /** Wakes the readers of `runId`. */
  readonly publish: (runId: string) => Effect.Effect<void>
  /**
   * Listens to `runId` while the scope is open. The effect returned waits for a change made
   * after the listening began or after it last returned; changes made meanwhile count as one.
   */
  readonly listen: (runId: string) => Effect.Effect<Effect.Effect<void>, never, Scope.Scope>
}

export const make = (): RunChanges => {
  // A sliding queue of one per listener: a change is remembered until taken, never piled up.
  const listeners = new Map<string, Set<Queue.Queue<void>>>()

  const publish: RunChanges["publish"] = (runId) =>
    Effect.suspend(() => {
      const queues = listeners.get(runId)
      return queues === undefined ? Effect.void : Effect.forEach(queues, (queue) => Queue.offer(queue, undefined), { discard: true })
    })

  const listen: RunChanges["listen"] = (runId) =>
    Effect.acquireRelease(
      Effect.map(Queue.sliding<void>(1), (queue) => {
        const queues = listeners.get(runId) ?? new Set<Queue.Queue<void>>()
        listeners.set(runId, queues.add(queue))
        return queue
      }),
      (queue) =>
        Effect.suspend(() => {
          const queues = listeners.get(runId)
          queues?.delete(queue)
          if (queues?.size === 0) listeners.delete(runId)
          return Queue.shutdown(queue)
        })
    ).pipe(Effect.map((queue) => Queue.take(queue)))

  return { publish, listen }
}
