#!/usr/bin/env bash
# containerd 1.6's runc.v2 shim driving cdirun end to end: a private containerd (its own config,
# root, state and socket under a temp dir, stopped by PID afterwards) and `ctr run --runc-binary`,
# which sets the same runc options (BinaryName, Root) that a CRI runtime handler sets.
#
#   CDIRUN_BIN=target/release/cdirun conformance/clients/containerd.sh
#
# Prints one ok/FAIL line per check and "N passed, N failed" last; exits non-zero on a failure.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
. "$repo/conformance/clients/lib.sh"
require_root
"$repo/scripts/install-deps.sh" test

cdirun=$(realpath -m "${CDIRUN_BIN:-$repo/target/release/cdirun}")
if [ ! -x "$cdirun" ]; then
  echo "$cdirun is missing: build it with cargo build --release, or set CDIRUN_BIN" >&2
  exit 1
fi

work=$(mktemp -d /tmp/cdirun-containerd.XXXXXX)
ns=cdirun-e2e
host_paths+=(/run/containerd /var/lib/containerd /opt/containerd)
remember_host
remember_cgroups "$ns"
containerd_pid=
ctr=(timeout 120 ctr --address "$work/containerd.sock" --namespace "$ns")

# stop_containerd: removes every task and container of the namespace (so their shims exit), then
# stops containerd by its PID, and any shim of this containerd that is still there by its PID.
stop_containerd() {
  [ -n "$containerd_pid" ] || return 0
  local id shim
  for id in $("${ctr[@]}" containers list --quiet 2>/dev/null); do
    "${ctr[@]}" task kill --all --signal KILL "$id" >/dev/null 2>&1 || true
    "${ctr[@]}" task delete --force "$id" >/dev/null 2>&1 || true
    "${ctr[@]}" containers delete "$id" >/dev/null 2>&1 || true
  done
  kill "$containerd_pid" 2>/dev/null || true
  wait "$containerd_pid" 2>/dev/null || true
  containerd_pid=
  for shim in $(pgrep -f "containerd-shim-runc-v2 .*-address $work/containerd.sock" || true); do
    kill -KILL "$shim" 2>/dev/null || true
  done
}
cleanup() {
  set +e
  stop_containerd
  mounts_under "$work" | sort -r | while read -r mnt; do umount -l "$mnt"; done
  forget_cgroups
  forget_host
  rm -rf "$work"
}
trap cleanup EXIT

# --- an image without a registry: rootfs tar -> podman import -> podman save -> ctr import -----
image=localhost/busybox:cdirun
read -ra podman_cmd < <(podman_store "$work/podman" </dev/null)
import_busybox "${podman_cmd[@]}" -- "$image" "$work"
"${podman_cmd[@]}" save --quiet --format oci-archive --output "$work/busybox.tar" "$image"
podman_wipe "$work/podman" "${podman_cmd[@]}"
rm -rf "$work/podman"

# --- cdirun's config (reaches it through containerd's environment, which the shim inherits) ----
write_cdi_spec "$work/cdi" "$work/accel0"
cat >"$work/cdirun.toml" <<TOML
state-dir = "$work/cdirun-state"
[cdi]
spec-dirs = ["$work/cdi"]
TOML

# --- containerd: everything under the temp dir, the CRI plugin with a cdirun runtime handler ---
cat >"$work/config.toml" <<TOML
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$work/containerd.sock"
[ttrpc]
  address = "$work/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$work/opt"
[plugins."io.containerd.grpc.v1.cri"]
  # No CAP_SYS_RESOURCE on this machine: never lower the OOM score below containerd's own.
  restrict_oom_score_adj = true
  sandbox_image = "$image"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$work/cni/bin"
    conf_dir = "$work/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "cdirun"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.cdirun]
    runtime_type = "io.containerd.runc.v2"
    # Only listed annotations reach config.json: CDI requests must be let through.
    container_annotations = ["cdi.k8s.io/*"]
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.cdirun.options]
      BinaryName = "$cdirun"
      Root = "$work/cdirun-cri-root"
TOML
CDIRUN_CONFIG=$work/cdirun.toml containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
containerd_pid=$!
if ! wait_for 30 "${ctr[@]}" version; then
  fail "containerd starts" "$(tail -n 20 "$work/containerd.log")"
  summary
fi
ok "containerd starts with a private config, root, state and socket"
check "ctr images import (podman save oci-archive)" "${ctr[@]}" images import "$work/busybox.tar"

# run_args: how every ctr run here picks cdirun (the shim's BinaryName and Root options).
runtime=(--runtime io.containerd.runc.v2 --runc-binary "$cdirun" --runc-root "$work/cdirun-root"
  --fifo-dir "$work/fifo")

# cgroup_of ID: the cgroup of a task's init, from /proc/PID/cgroup (pids hierarchy).
cgroup_of() {
  local pid
  pid=$("${ctr[@]}" task list | awk -v id="$1" '$1 == id {print $2}')
  awk -F: '$2 == "pids" {print $3}' "/proc/$pid/cgroup"
}
task_status() {
  "${ctr[@]}" task list | awk -v id="$1" '$1 == id {print $3}'
}

# script(1) gives ctr the terminal it wants for --tty; the container's tty name is in its output.
# --- run -----------------------------------------------------------------------------------------
# The container sees its cgroup nested under workload.slice: cdirun's doing, so this also proves
# the shim ran cdirun.
check_output "run --rm --runc-binary: output and nested cgroup" "hello
/workload.slice/$ns/once" \
  "${ctr[@]}" run --rm "${runtime[@]}" "$image" once \
  sh -c 'echo hello; awk -F: '\''$2 == "pids" {print $3}'\'' /proc/self/cgroup'
check_output "run --rm: exit status of the container" "3" \
  bash -c '"$@" run --rm '"${runtime[*]}"' '"$image"' exit3 sh -c "exit 3"; echo $?' _ "${ctr[@]}"
check_output "run --rm -t: a terminal through the console socket" "/dev/pts/0" \
  bash -c 'script -qec "$* run --rm --tty '"${runtime[*]}"' '"$image"' tty1 tty" /dev/null |
    grep -o "/dev/pts/[0-9]*"' _ "${ctr[@]}"

# --- a long-running task: exec, ps, metrics, pause/resume ---------------------------------------
check "run -d" "${ctr[@]}" run -d "${runtime[@]}" "$image" long sleep 1000
check_output "task list: RUNNING" "RUNNING" task_status long
check_output "task exec: output and exit status" "in-exec
4" bash -c '"$@" task exec --exec-id e1 long sh -c "echo in-exec; exit 4"; echo $?' _ "${ctr[@]}"
check_output "task exec -t: a terminal for the exec'd process" "/dev/pts/0" \
  bash -c 'script -qec "$* task exec --tty --exec-id e2 long tty" /dev/null | grep -o "/dev/pts/[0-9]*"' \
  _ "${ctr[@]}"
check "task exec -d: detached process starts" \
  "${ctr[@]}" task exec --detach --exec-id e3 long sleep 999
cg=$(cgroup_of long)
check "task ps (cdirun ps --format json): the processes of the cgroup" bash -c '
  want=$(sort -n /sys/fs/cgroup/pids'"$cg"'/cgroup.procs | xargs)
  got=$("$@" task ps long | awk "NR > 1 {print \$1}" | sort -n | xargs)
  [ "$got" = "$want" ] && [ "$(wc -w <<<"$got")" -ge 2 ] || { echo "ps: $got; cgroup: $want"; exit 1; }' \
  _ "${ctr[@]}"
# The shim reads metrics from the cgroup of the task's process, which cdirun nested.
check "task metrics: read from the nested cgroup" bash -c '
  out=$("$@" task metrics long)
  pids=$(awk "\$1 == \"pids.current\" {print \$2}" <<<"$out")
  mem=$(awk "\$1 == \"memory.usage_in_bytes\" {print \$2}" <<<"$out")
  want=$(cat /sys/fs/cgroup/pids'"$cg"'/pids.current)
  [ "$pids" = "$want" ] && [ "$pids" -ge 2 ] && [ "${mem:-0}" -gt 0 ] ||
    { echo "metrics: pids=$pids mem=$mem; cgroup pids.current=$want"; echo "$out"; exit 1; }' _ "${ctr[@]}"
check "task pause" "${ctr[@]}" task pause long
check_output "paused: task status and the freezer cgroup" "PAUSED FROZEN" \
  bash -c 'echo "$1 $(cat /sys/fs/cgroup/freezer'"$cg"'/freezer.state)"' _ "$(task_status long)"
check "task resume" "${ctr[@]}" task resume long
check_output "resumed: task status and the freezer cgroup" "RUNNING THAWED" \
  bash -c 'echo "$1 $(cat /sys/fs/cgroup/freezer'"$cg"'/freezer.state)"' _ "$(task_status long)"

# --- kill and delete ------------------------------------------------------------------------------
check "task kill --all: every process of the container" "${ctr[@]}" task kill --all --signal KILL long
stopped_and_empty() {
  wait_for 10 bash -c '[ "$("$@" task list | awk "\$1 == \"long\" {print \$3}")" = STOPPED ]' _ "${ctr[@]}"
  echo "$(task_status long) $(xargs </sys/fs/cgroup/pids"$cg"/cgroup.procs 2>/dev/null)"
}
check_output "killed: STOPPED, cgroup empty" "STOPPED " stopped_and_empty
# The shim runs `delete` and then `delete --force` on a container that is already gone.
check "task delete (delete, then delete --force of a gone container)" "${ctr[@]}" task delete long
check "container delete" "${ctr[@]}" containers delete long
check "delete: no cdirun state, no cgroup left" bash -c '
  [ ! -e '"$work/cdirun-root/$ns"'/long ] || { echo "state left"; exit 1; }
  left=$(find /sys/fs/cgroup -maxdepth 4 -path "*'"$ns"'/long")
  [ -z "$left" ] || { echo "cgroups left: $left"; exit 1; }'

check "run -d a trapping init" "${ctr[@]}" run -d "${runtime[@]}" "$image" trapper \
  sh -c 'trap "exit 7" TERM; echo ready >/tmp/ready; while true; do sleep 0.1; done'
wait_for 10 "${ctr[@]}" task exec --exec-id probe trapper test -e /tmp/ready || true
check "task kill (SIGTERM by default)" "${ctr[@]}" task kill trapper
check_output "task delete reports the trap's exit status" "7" bash -c '
  for _ in $(seq 100); do "$@" task list | grep -q "trapper .*STOPPED" && break; sleep 0.1; done
  "$@" task delete trapper 2>&1 | grep -o "exit code [0-9]*" | awk "{print \$3}"' _ "${ctr[@]}"
check "container delete" "${ctr[@]}" containers delete trapper

# --- CDI: annotations through ctr, and a device that cannot be resolved -------------------------
check_output "run --annotation cdi.k8s.io/...: the container gets the device" "$device_probe_want" \
  "${ctr[@]}" run --rm "${runtime[@]}" --annotation cdi.k8s.io/test=test.cdirun.dev/accel=accel0 \
  "$image" cdi1 sh -c "$device_probe"
check_fails_with "failing create: cdirun's message in ctr's error output" \
  'OCI runtime create failed: .*unresolvable CDI devices test\.cdirun\.dev/accel=nosuch \(annotation cdi\.k8s\.io/test\)' \
  "${ctr[@]}" run --rm "${runtime[@]}" --annotation cdi.k8s.io/test=test.cdirun.dev/accel=nosuch \
  "$image" cdi2 true
check_output "failing create leaves no task and no cdirun state" "" bash -c '
  "$@" task list --quiet; ls '"$work/cdirun-root/$ns"' 2>/dev/null' _ "${ctr[@]}"
"${ctr[@]}" containers delete cdi2 >/dev/null 2>&1 || true

# --- hygiene --------------------------------------------------------------------------------------
stop_containerd
check_output "containerd and its shims stopped" "" \
  bash -c 'pgrep -af "[c]ontainerd.*'"$work"'" || true'
check_output "no mounts left under the temp dir" "" bash -c 'awk -v dir='"$work"' '\''index($5, dir) == 1 {print $5}'\'' /proc/self/mountinfo'

summary
