#!/usr/bin/env bash
# Usage: leftovers.sh RUN_ID DIR
#
# After a test run: whatever it started must be gone. A process is the run's when its initial
# environment carries SKYREPL_TEST_RUN=RUN_ID (scripts/test.sh sets it for the test runners only,
# and every process they start inherits it unless given an environment of its own), or when its
# working directory or command line is under DIR (the run's TMPDIR, where every test home and
# so every sandbox's directory is). A sandbox that a test leaves to its agent's dead-man switch
# ends within seconds, so the run's processes are given up to a minute; what is still there then
# is listed, killed, and fails the run. Zombies are not counted: they are already dead.
set -uo pipefail
run_id=$1
dir=$2
deadline=$((SECONDS + 60))

leftovers() {
  local proc pid state cwd
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    [ "$pid" = "$$" ] && continue
    # Any of these reads fails for a process that ended meanwhile: it is not left over.
    state=$(sed -n 's/^State:\s*\(.\).*/\1/p' "$proc/status" 2>/dev/null) || continue
    [ -z "$state" ] || [ "$state" = Z ] && continue
    cwd=$(readlink "$proc/cwd" 2>/dev/null) || cwd=""
    if { tr '\0' '\n' < "$proc/environ" | grep -qx "SKYREPL_TEST_RUN=$run_id"; } 2>/dev/null ||
      [ "${cwd#"$dir"}" != "$cwd" ] ||
      { tr '\0' ' ' < "$proc/cmdline" | grep -qF "$dir/"; } 2>/dev/null; then
      echo "$pid"
    fi
  done
}

while :; do
  left=$(leftovers)
  [ -z "$left" ] && exit 0
  [ "$SECONDS" -ge "$deadline" ] && break
  sleep 2
done

echo "the test run left these processes running (killed now):" >&2
for pid in $left; do
  echo "  $pid: $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-200)" >&2
done
for pid in $left; do kill -KILL "$pid" 2>/dev/null; done
exit 1
