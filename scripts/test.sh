#!/usr/bin/env bash
# The whole test suite: types, the agent (Python unittest), then every Vitest suite on Node and
# again on Bun (the store picks its SQLite driver by runtime, so this runs both drivers).
set -euo pipefail
cd "$(dirname "$0")/.."

python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)

# Every process the tests start carries this run's id, and every test home is under this
# run's TMPDIR: after each runner, scripts/leftovers.sh fails the run on anything still there.
repo=$PWD
run_id="$$-$(date +%s)"
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/skyrepl-suite.XXXXXX")
# As open as /tmp itself: some tests run sandboxes as a user who is not root.
chmod 1777 "$run_tmp"
trap 'rm -rf "$run_tmp"' EXIT
# Runs a test runner with the run's id and TMPDIR, then checks that it left nothing running
# (also when it failed, so that its leftovers are ended).
tests() {
  local status=0
  SKYREPL_TEST_RUN=$run_id TMPDIR=$run_tmp "$@" || status=$?
  bash "$repo/scripts/leftovers.sh" "$run_id" "$run_tmp" || status=1
  return "$status"
}

echo "== build the CLI bundle (tests run the bundle, as users do)"
npm run build --silent
echo "== typecheck"
npx tsc -p tsconfig.json --noEmit
# bun test's example needs Bun's types (bun:test), which the rest of the code must not see.
npx tsc -p examples/bun-test --noEmit
# So does the CLI's build script (Bun.build and its plugin API).
npx tsc -p packages/cli/scripts --noEmit
echo "== agent (unittest, $($python --version))"
(cd agent && tests "$python" -m unittest discover -s tests -t .)
echo "== API reference (TypeDoc into docs/api; a warning fails the build)"
npm run --silent docs:api
echo "== vitest on Node $(node --version)"
tests npx vitest run
echo "== vitest on Bun $(npx bun --version)"
# examples/test starts every example on its own runtime (Node for Vitest and Jest, Bun for
# bun test and the REPL); running those drivers again under Bun would repeat the same processes.
tests npx bun --bun vitest run --exclude 'examples/test/**'
