#!/usr/bin/env bash
# The one command that runs every test: unit, multi-process integration, and interop with Node's
# @grpc/grpc-js-xds. Installs the interop client from the committed package-lock.json first.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 MSBUILDDISABLENODEREUSE=1

if ! command -v node >/dev/null 2>&1; then
  echo "error: Node.js 20+ is needed by the grpc-js-xds interop test. Install it (Debian: apt-get install -y nodejs npm) and run build/test.sh again." >&2
  exit 1
fi
if ! command -v prometheus >/dev/null 2>&1; then
  echo "error: the 'prometheus' binary (Prometheus 2.x) is needed by the telemetry integration tests, which scrape the sample services with it. Install it (Debian: apt-get install -y prometheus; .ci/run does this) and run build/test.sh again. The tests start their own Prometheus process; the system service is not needed." >&2
  exit 1
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "error: python3 (3.9+) is needed by the demo's Python sample and its integration test (samples/Mesh.Samples.Python). Install it (Debian: apt-get install -y python3; .ci/run does this) and run build/test.sh again." >&2
  exit 1
fi
npm ci --prefix tests/Mesh.IntegrationTests/node --no-audit --no-fund --loglevel=error

dotnet build Mesh.Client.sln -nologo -v minimal
log=$(mktemp)
status=0
# One test project at a time: the integration tests start many processes on a 2-core machine.
dotnet test Mesh.Client.sln --no-build -nologo -m:1 --logger "console;verbosity=normal" 2>&1 | tee "$log" || status=$?

# Every failed test again, with its message, so the end of the log names what failed even when the
# middle of a long run is cut.
awk '/^ +Failed [^ ]/ { show = 1; n = 0; print "FAILED:" substr($0, index($0, "Failed") + 6); next }
     show && /^ +(Passed|Skipped|Failed) / { show = 0 }
     show && /^Test Run|^Total tests/ { show = 0 }
     show && n < 40 { print; n++ }' "$log"

# One closing line for the whole run, summed over the test projects' "Total tests" blocks.
awk '/^Total tests: [0-9]+/ { block = 1; next }
     block && /^ +Passed: +[0-9]+ *$/  { p += $2; next }
     block && /^ +Failed: +[0-9]+ *$/  { f += $2; next }
     block && /^ +Skipped: +[0-9]+ *$/ { s += $2; next }
     { block = 0 }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
exit $status
