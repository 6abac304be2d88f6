/**
 * What was changed for speed, for the end of results.md. Kept by hand beside the code: each
 * entry names the area, the cause it removes, and what it was worth when measured.
 */
export const changes = `## What was changed for speed

Each change is a focused one in its own area; the suites of that area pass on Node and on Bun.

| area | cause found | change |
| --- | --- | --- |
| CLI bundle (packages/cli build) | Every command parsed the 0.5 MB bundle from source, and since the AWS provider was registered the bundle also carried the AWS SDK (2.5 MB of source, 7 MB compiled) that only \`--provider aws\` uses | The bundle is CommonJS with Bun's precompiled bytecode (\`--bytecode\`), and \`@aws-sdk/*\` stay external: the provider already imports them on first use, so they load from node_modules only then. \`repl run list\` lost about a third of its CPU time |
| CLI entry (packages/cli/src/entry.ts) | \`repl --version\` wrote through \`process.stdout\`, whose first use on Bun builds a stream and loads node:tty, costing more than Bun's own start-up | It writes the line to descriptor 1 directly (falling back to the stream if the descriptor refuses) |
| CLI launcher (packages/cli/bin/repl) | Four \`$(dirname …)\` calls per start, each a fork and an exec | Parameter expansion instead; one \`readlink -f\` remains |
| local provider: process start (packages/provider-local/src/local-api.ts) | execa was loaded by every CLI command (about 28 ms of module evaluation in a bundle) for one \`spawn\` per launch | \`node:child_process\` directly, with the same detached, log-file-descriptor start and the same error classification |
| local provider: namespace probe (local-provider.ts) | Building the provider started \`unshare … true\` (a process) for every command, listings included | Probed once on first need (a spawn, or reading \`capabilities.isolation\`), shared by concurrent spawns |
| local provider: agent bytecode (agent-cache.ts, new) | Python compiles a script given by path on every start; for the 1,200-line agent that was about 20 ms of CPU of every launch | The provider keeps a \`.pyc\` per (agent bytes, interpreter) under \`$SKYREPL_HOME/local/agent-cache\`, compiled in the background by the same interpreter after the first launch, and starts the agent from it |
| agent (agent/skyrepl_agent.py) | \`import http.client\` pulls in the email package (header parsing) and the \`http\` status enum: about 10 ms of the agent's start-up here, which every launch waits for; its response parsing also runs the email parser on every upload | A small HTTP/1.1 client of its own (persistent connections, Content-Length and chunked bodies, TLS through \`ssl\` only for an https controller, TCP_NODELAY); the trick that kept \`ssl\` from loading is no longer needed. The agent's unittest suite passes unchanged |
| local provider: /proc scans (local-api.ts) | Terminating a sandbox scans /proc several times, each reading two files per process; 200 sandboxes ending at once made that most of the controller's CPU | A process's markers are remembered while its pid, start time and command name stay the same, so a scan reads one file per known process |
| attach (packages/core/src/engine/attach.ts) | A reader in another process (\`repl run attach\`) polled the store every 50 ms: about 30 ms median latency | Polls every 10 ms; an empty poll is two indexed SELECTs |
| lease renewal (packages/core/src/engine/skyrepl.ts) | Not a speed problem: found by B4, whose 512 MiB runs outlive one lease TTL. The renewal fiber computed its expiry once, so every renewal wrote the same instant; after one TTL a live controller's leases looked expired to every other controller, and a second engine on the same store (as every \`repl\` command in another terminal is) reaped a run that was still streaming | Each renewal computes its own expiry. A new end-to-end test (test/engine.test.ts) opens the store from other controllers several TTLs into a run and fails without the fix |
| AWS provider: calls per launch and terminate (packages/provider-aws/src/aws-provider.ts) | A launch polled DescribeInstances after RunInstances until EC2 showed the instance, though RunInstances' answer already names it and its state; \`terminate\` described the instance by id and by name before TerminateInstances, and every \`describe\` did both too | Spawn returns on RunInstances' answer (an instance EC2 does not show yet is still \`pending\`, and terminating it still fails as transient). When this process launched the instance and every RunInstances had a definite answer, \`terminate\` is TerminateInstances alone (its answer gives the new state) and \`describe\` one DescribeInstances by id; another process's instance, or a launch that may have left a twin, keeps the search by name. B6 (medians over this work's runs): a launch went from 2 calls to 1 and from 38–47 ms to 17–22 ms; terminate + describe-until-gone from 5 calls to 2 and from 70–90 ms to 23–31 ms |
| AWS user-data (packages/provider-aws/src/user-data.ts) | Every launch gzipped the whole bootstrap, the ~48 KB agent included, at level 9: about 1.6 ms of CPU per launch on Bun | The user-data is two gzip members: the agent's install step, compressed once per agent source, then the part naming the instance; gzip (and cloud-init, which inflates it with Python's gzip) reads consecutive members as one stream. About 0.06 ms per launch |
| AWS API calls (packages/provider-aws/src/aws-api.ts) | Around every SDK call: Effect's \`timeoutFail\` forked a fiber (about 0.2 ms on Bun), the loaded SDK was handed over through another asynchronous step, and RunInstances rebuilt a 1,000-entry array of instance types; on Bun the SDK's default HTTP handler goes through Bun's node:http emulation, about 0.3 ms more per call than Bun's own fetch | A cleared timer aborts the request at the limit; the SDK and a Set of instance types are kept once loaded; on Bun the clients use \`@smithy/fetch-http-handler\` (Node keeps node:http, the faster there) |
| agent hub (packages/core/src/hub/agent-hub.ts) | Not a speed problem but found by these runs: with launches this fast, a ping or event could be written to an event stream that had just been ended, which on Node is an unhandled 'error' that ends the process | Writes to an ended stream are skipped |

## Where a target is still missed, and what bounds it

Measured causes, from the figures above and from profiling during this work; each needs more
than a focused fix, so it is left for a decision.

- **B1, first byte ≤ 1.5× the bare sandbox.** What remains is the agent's own start: the
  interpreter, then \`json\`, \`subprocess\`, \`threading\`, \`socket\` and \`signal\` (about 15 ms here
  over a bare \`python3 -S\`, which is all the baseline pays), then registering and opening the
  event stream. The controller's side (store writes, spawn, HTTP, attach) is a few milliseconds.
  Reaching 1.5× needs an agent already running when the launch comes (a warm pool, which
  docs/decisions.md rules out for now) or an agent that is not a Python program.
- **B2, \`repl run list\` ≤ ¼ and \`repl run -c\` ≤ ½ of \`aws --version\`.** Both pay the engine's
  cold start in a fresh Bun process: opening the store (driver, pragmas, schema check, control
  id), the agent endpoint, the controller row and the lease reaper, all on code the JIT has not
  seen yet. The bundle is now precompiled and the providers no longer spawn or load anything at
  start; the rest is the engine itself. A listing that skipped the endpoint, or that printed
  before reaping, would be the next step, but \`repl run list\` reaping on the way is tested
  behaviour (test/cli.test.ts), so that is a design choice, not a tweak.
- **B3, p99 ≤ 1 s for 200 launches at once.** Two cores: 200 agents and their sandboxes need
  about 200 × the sequential launch time ÷ 2 of CPU before the last can finish (the "CPU floor"
  row), and every launch runs its own Python agent. Nothing failed and nothing was left.
- **B4, attach ≥ 50 % of a pipe.** Every byte goes into SQLite: the store alone appends 256 KiB
  chunks at the "store alone" rate, far below a pipe, and attach gets from half of that to
  nearly all of it, run to run (the agent's upload and the store take turns on each chunk). Half a
  pipe's rate needs output kept outside SQLite (an append-only file per run, with offsets in
  the database), a change to the store's design.
- **B5, 20,000 transitions/s.** The target is within reach but not held: over this work's
  full runs the store did between about 14,000 and 24,500 transitions/s on Bun and 12,000 to
  20,000 on Node, meeting it only in the quietest runs (the machine is shared, and the CPU-time
  figure moves with it too). A transition is one compare-and-set statement and runs at 0.7–1×
  of a raw INSERT through the same driver, whose own rate is close to the target; the rest is the
  client's per-statement work (span, statement compilation, connection semaphore) and decoding
  the returned row with its schema.
- **B6, the SDK's share ≤ 0.10 of moto's time.** The call counts are now the minimal ones (a
  launch is one RunInstances; terminate then describe-until-gone is TerminateInstances and one
  DescribeInstances), and the client's time per launch fell from about 10 ms to about 5 ms, but
  moto's own time fell with it (it no longer answers a DescribeInstances per launch), so the
  share stayed where it was: 0.38–0.48 for a launch and 0.42–0.57 for a terminate over three
  runs, against 0.35–0.47 and 0.14–0.38 before. What remains is the AWS SDK's own work per call: serialising and
  signing the request, and parsing its XML answer through the SDK's schema-driven
  deserialiser. Against a server that answers at once, a RunInstances through the SDK costs
  about 1.5 ms once its code is hot (after thousands of calls), already over a tenth of moto's
  ~10 ms; in B6's 20 launches that code is not hot yet, and a whole launch costs the client
  about 5 ms (a CLI command, one launch per process, is colder still). Our own code around the
  call (the spawn's Effect pipeline, reading the agent, the user-data, decoding the answer) is
  about 1 ms of the hot 2.6 ms. A tenth of moto's time needs an EC2 client of our own (the
  Query protocol, SigV4 and a reader for the few fields decoded) instead of the AWS SDK; against
  real EC2, whose RunInstances takes hundreds of milliseconds, the same 5 ms would be about 1 %. The
  proxy's cost per call is now calibrated from alternating pairs (the median of 40
  differences): the earlier difference of two batch means moved from 1.5 to 4.5 ms between runs.
`
