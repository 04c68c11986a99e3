#!/usr/bin/env bash
# Runs every client suite (podman, containerd, docker, rootless podman, the .deb) one after the
# other, each with its wall time, and ends with the total "N passed, N failed"; exits non-zero if
# any suite failed.
#
#   CDIRUN_BIN=target/release/cdirun conformance/clients/run.sh [podman] [containerd] [docker] [rootless] [deb]
set -uo pipefail
exec </dev/null # a defined stdin for every suite (see scripts/test.sh)
repo=$(cd "$(dirname "$0")/../.." && pwd)
declare -A suite_path=(
  [podman]=$repo/conformance/clients/podman.sh
  [containerd]=$repo/conformance/clients/containerd.sh
  [docker]=$repo/conformance/clients/docker.sh
  [rootless]=$repo/conformance/clients/rootless.sh
  [deb]=$repo/packaging/test-deb.sh
)
suites=("$@")
((${#suites[@]})) || suites=(podman containerd docker rootless deb)

total_passed=0
total_failed=0
status=0
for suite in "${suites[@]}"; do
  path=${suite_path[$suite]:-}
  [ -n "$path" ] || { echo "unknown suite $suite (podman, containerd, docker, rootless, deb)" >&2; exit 2; }
  echo "=== $suite"
  start=$SECONDS
  bash "$path" | tee "/tmp/cdirun-suite-$suite.$$"
  rc=${PIPESTATUS[0]}
  last=$(tail -n 1 "/tmp/cdirun-suite-$suite.$$")
  rm -f "/tmp/cdirun-suite-$suite.$$"
  if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    total_passed=$((total_passed + BASH_REMATCH[1]))
    total_failed=$((total_failed + BASH_REMATCH[2]))
  else
    # A suite that died before its summary counts as one failure.
    total_failed=$((total_failed + 1))
  fi
  ((rc == 0)) || status=1
  echo "=== $suite: exit $rc in $((SECONDS - start)) s"
done
echo "$total_passed passed, $total_failed failed"
exit "$status"
