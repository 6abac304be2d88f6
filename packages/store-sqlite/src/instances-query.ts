import type { InstanceFilter } from "@skyrepl/core"

/**
 * The statement `listInstances` runs for `filter` (its states non-empty when given), selecting
 * `columns`. A filter of states that leaves out `terminated` also asks for `terminated_at IS
 * NULL`: SQLite reads a partial index only for a query whose WHERE holds the index's condition
 * word for word, and this lets it read `instances_live` (migration 3), as small as what is
 * running, instead of every instance ever made. Every engine's start and every reaper pass ask
 * this. The state is still checked, so a row whose state was set to `terminated` by other means
 * than `transitionInstance` is not listed.
 */
export const instancesQuery = (columns: string, filter: InstanceFilter): readonly [string, ReadonlyArray<unknown>] => {
  const clauses: Array<string> = []
  const params: Array<unknown> = []
  if (filter.states !== undefined) {
    if (!filter.states.includes("terminated")) clauses.push("terminated_at IS NULL")
    clauses.push(`state IN (${filter.states.map(() => "?").join(", ")})`)
    params.push(...filter.states)
  }
  if (filter.provider !== undefined) {
    clauses.push("provider = ?")
    params.push(filter.provider)
  }
  if (filter.ownerControllerId !== undefined) {
    clauses.push("owner_controller_id = ?")
    params.push(filter.ownerControllerId)
  }
  const where = clauses.length === 0 ? "" : ` WHERE ${clauses.join(" AND ")}`
  return [`SELECT ${columns} FROM instances${where} ORDER BY created_at, id`, params]
}
