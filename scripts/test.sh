#!/usr/bin/env bash
# Runs every test suite on this machine, as root, with real containers: the Rust unit and
# integration tests, then the suites under conformance/ (the last two boot a cgroup v2 guest
# and a systemd).
# Installs what the suites need first, builds the release binary once and hands it to every
# suite through CDIRUN_BIN.
# Prints each suite's result and, last, "N passed, N failed, N skipped" over all of them (the
# skipped are conformance programs listed in conformance/expected-failures with their reasons).
set -uo pipefail
# No suite reads the caller's terminal. A CI runner may start us with stdin closed, and then the
# first file a test opens becomes fd 0: script(1) gives up at once and a shell in a container
# closes its own pipe. /dev/null makes every suite's stdin the same wherever it runs.
exec </dev/null
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
scripts/install-deps.sh test || exit 1
find_cargo || exit 1

echo "== build"
cargo build --release --locked --workspace || exit 1
export CDIRUN_BIN=$PWD/target/release/cdirun

passed=0
failed=0
skipped=0
suites_failed=()
logs=$PWD/target/test-logs
rm -rf "$logs" && mkdir -p "$logs"

# add_counts LOG: adds up cargo's "test result:" lines in LOG or, for the other suites, their
# closing "N passed, N failed[, N skipped]" line.
add_counts() {
  local p f s
  read -r p f s < <(grep -E '^test result: ' "$1" |
    sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/' |
    awk '{p += $1; f += $2; s += $3} END {print p + 0, f + 0, s + 0}')
  if [ "$p" = 0 ] && [ "$f" = 0 ]; then
    read -r p f s < <(grep -E '^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1 |
      sed -E 's/^([A-Za-z]+: )?([0-9]+) passed, ([0-9]+) failed(, ([0-9]+) skipped)?.*/\2 \3 \5/')
  fi
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
  skipped=$((skipped + ${s:-0}))
}

# suite NAME CMD...: runs one suite, keeps its log, counts its results.
suite() {
  local name=$1
  shift
  echo "== $name"
  local log="$logs/$name.log" start=$SECONDS
  "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc in $((SECONDS - start)) s"
  add_counts "$log"
  if [ "$rc" != 0 ]; then
    suites_failed+=("$name")
  fi
}

# Test binaries build in the dev profile (fat LTO would relink each one slowly); the containers
# they drive run the release binary above.
suite cargo-test cargo test --locked --workspace

# The OCI runtime-tools validation suite (cdirun only; --compare adds runc and crun).
suite runtime-tools conformance/runtime-tools.sh

# Real clients driving cdirun: podman, containerd (ctr and CRI), Docker, and the .deb installed.
suite clients conformance/clients/run.sh

# A pure cgroup v2 kernel with a booted systemd, under QEMU: device rules with both drivers,
# cdirun beside runc and crun. This host's hybrid layout cannot show them.
suite cgroupv2 conformance/cgroupv2/run.sh

# A booted systemd (nspawn, this host's hybrid layout): --systemd-cgroup scopes as systemd sees
# them, across daemon-reload.
suite systemd conformance/systemd/run.sh

echo "== summary (logs in $logs)"
if ((${#suites_failed[@]})); then
  echo "failed suites: ${suites_failed[*]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ] && ((${#suites_failed[@]} == 0))
