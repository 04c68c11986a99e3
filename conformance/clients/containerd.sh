#!/usr/bin/env bash
# containerd 1.6's runc.v2 shim driving cdirun end to end: a private containerd (its own config,
# root, state and socket under a temp dir, stopped by PID afterwards), driven two ways:
#  - `ctr run --runc-binary`, which hands the shim the runc options BinaryName and Root;
#  - the CRI plugin's runtime handler "cdirun" (runtime_type io.containerd.runc.v2 with options
#    BinaryName and Root, container_annotations = ["cdi.k8s.io/*"]), driven through gRPC by
#    cri/cri.py as kubelet would (no crictl package on Debian 12).
#
#   CDIRUN_BIN=target/release/cdirun conformance/clients/containerd.sh
#
# Prints one ok/FAIL line per check and "N passed, N failed" last; exits non-zero on a failure.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
. "$repo/conformance/clients/lib.sh"
require_root
"$repo/scripts/install-deps.sh" test

cdirun=$(cdirun_under_test)

work=$(mktemp -d /tmp/cdirun-containerd.XXXXXX)
ns=cdirun-e2e
host_paths+=(/run/containerd /var/lib/containerd /opt/containerd)
remember_host
remember_cgroups "$ns" kubepods k8s.io
containerd_pid=
ctr_bare=(ctr --address "$work/containerd.sock" --namespace "$ns")
ctr=(timeout 120 "${ctr_bare[@]}")
ctr_k8s=(timeout 120 ctr --address "$work/containerd.sock" --namespace k8s.io)
cri=(timeout 120 env CRI_PB_DIR="$work/cri-pb" /usr/bin/python3 "$repo/conformance/clients/cri/cri.py"
  "$work/containerd.sock")

# stop_containerd: removes every task and container of the namespace (so their shims exit), then
# stops containerd by its PID, and any shim of this containerd that is still there by its PID.
stop_containerd() {
  [ -n "$containerd_pid" ] || return 0
  local id shim
  for id in $("${ctr_k8s[@]}" containers list --quiet 2>/dev/null); do
    "${cri[@]}" rmp "$id" >/dev/null 2>&1 || "${cri[@]}" rm "$id" >/dev/null 2>&1 || true
  done
  for ctl in ctr ctr_k8s; do
    local -n c=$ctl
    for id in $("${c[@]}" containers list --quiet 2>/dev/null); do
      "${c[@]}" task kill --all --signal KILL "$id" >/dev/null 2>&1 || true
      "${c[@]}" task delete --force "$id" >/dev/null 2>&1 || true
      "${c[@]}" containers delete "$id" >/dev/null 2>&1 || true
    done
  done
  kill "$containerd_pid" 2>/dev/null || true
  wait "$containerd_pid" 2>/dev/null || true
  containerd_pid=
  for shim in $(client_pids "$work/containerd.sock"); do
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
# Its command is what the CRI plugin runs as each pod's sandbox ("pause") container.
import_busybox "${podman_cmd[@]}" -- "$image" "$work" '["/bin/sleep", "2147483647"]'
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
# The packaged handler snippet must load: containerd merges it through `imports`.
cat >"$work/example-check.toml" <<TOML
version = 2
root = "$work/example-root"
state = "$work/example-state"
imports = ["$repo/packaging/examples/containerd-cdirun.toml"]
TOML
check_output "the packaged containerd snippet loads (config dump)" \
  'BinaryName = "/usr/bin/cdirun" container_annotations = ["cdi.k8s.io/*", "io.cdirun.*"]' \
  bash -c 'containerd --config "$1" config dump |
    awk "/^ *\\[/ { on = /runtimes\\.cdirun[].]/ } on" |
    grep -oE "BinaryName = \"[^\"]*\"|container_annotations = \[[^]]*\]" | sort | xargs -d "\n"' \
  _ "$work/example-check.toml"

CDIRUN_CONFIG=$work/cdirun.toml containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
containerd_pid=$!
if ! wait_for 30 "${ctr[@]}" version; then
  fail "containerd starts" "$(tail -n 20 "$work/containerd.log")"
  summary
fi
ok "containerd starts with a private config, root, state and socket"
check "ctr images import (podman save oci-archive)" "${ctr[@]}" images import "$work/busybox.tar"
# CRI keeps its images in the k8s.io namespace.
check "ctr images import into k8s.io for CRI" "${ctr_k8s[@]}" images import "$work/busybox.tar"

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

# check_tty NAME CTR-ARGS...: `ctr CTR-ARGS` (a --tty command running `tty` in the container)
# must print the container's own terminal (see lib.sh).
check_tty() {
  local name=$1
  shift
  check_terminal "$name" "${ctr_bare[@]}" "$@"
}

# --- run -----------------------------------------------------------------------------------------
# The container sees its cgroup nested under workload.slice: cdirun's doing, so this also proves
# the shim ran cdirun.
check_output "run --rm --runc-binary: output and nested cgroup" "hello
/workload.slice/$ns/once" \
  "${ctr[@]}" run --rm "${runtime[@]}" "$image" once \
  sh -c 'echo hello; awk -F: '\''$2 == "pids" {print $3}'\'' /proc/self/cgroup'
check_output "run --rm: exit status of the container" "3" \
  bash -c '"$@" run --rm '"${runtime[*]}"' '"$image"' exit3 sh -c "exit 3"; echo $?' _ "${ctr[@]}"
check_tty "run --rm -t: a terminal through the console socket" \
  run --rm --tty "${runtime[@]}" "$image" tty1 tty

check_output "run --mount type=tmpfs (no source) and --read-only" "tmpfs ro" \
  "${ctr[@]}" run --rm "${runtime[@]}" --read-only --mount type=tmpfs,dst=/scratch,options=size=1m \
  "$image" tmpfs1 sh -c 'echo "$(awk "\$2 == \"/scratch\" {print \$3}" /proc/mounts) $(touch /x 2>/dev/null && echo rw || echo ro)"'

# runc brings up lo in a network namespace it creates; --net-host shares the host's instead.
check_output "run (own network namespace): loopback up" "<LOOPBACK,UP,LOWER_UP>" \
  "${ctr[@]}" run --rm "${runtime[@]}" "$image" netns1 sh -c "ip -o link show lo | grep -o '<[^>]*>'"
check_output "run --net-host: the host's interfaces" "$(ip -o link show | awk -F': ' '{print $2}' | sort | xargs)" \
  "${ctr[@]}" run --rm --net-host "${runtime[@]}" "$image" nethost1 \
  sh -c "ip -o link show | awk -F': ' '{print \$2}' | sort | xargs"

# --- a long-running task: exec, ps, metrics, pause/resume ---------------------------------------
# Every task exec names its fifo dir: ctr would leave a detached exec's fifos in /run/containerd.
check "run -d --memory-limit --cpus" \
  "${ctr[@]}" run -d "${runtime[@]}" --memory-limit 33554432 --cpus 0.5 "$image" long sleep 1000
check_output "task list: RUNNING" "RUNNING" task_status long
cg=$(cgroup_of long)
check_output "--memory-limit --cpus: limits in the nested cgroup" "33554432 50000" bash -c \
  'echo "$(cat /sys/fs/cgroup/memory'"$cg"'/memory.limit_in_bytes) $(cat /sys/fs/cgroup/cpu'"$cg"'/cpu.cfs_quota_us)"'
check_output "task exec --user 1000:1000 --cwd /bin" "1000 1000 /bin" \
  "${ctr[@]}" task exec --fifo-dir "$work/fifo" --exec-id u1 --user 1000:1000 --cwd /bin long sh -c 'echo "$(id -u) $(id -g) $(pwd)"'
check_output "run --with-ns pid:/proc/PID/ns/pid: joins the task's pid namespace" "sleep" \
  bash -c '"$@" | tr -d "()"' _ "${ctr[@]}" run --rm "${runtime[@]}" \
  --with-ns "pid:/proc/$("${ctr[@]}" task list | awk '$1 == "long" {print $2}')/ns/pid" "$image" joiner \
  sh -c 'cut -d " " -f 2 /proc/1/stat'
check_fails_with "task checkpoint: refused with cdirun's reason" \
  'checkpoint is not supported by cdirun' "${ctr[@]}" task checkpoint long
check_output "refused checkpoint: the task still runs" "RUNNING" task_status long
check_output "task exec: output and exit status" "in-exec
4" bash -c '"$@" task exec --fifo-dir '"$work/fifo"' --exec-id e1 long sh -c "echo in-exec; exit 4"; echo $?' _ "${ctr[@]}"
check_tty "task exec -t: a terminal for the exec'd process" \
  task exec --fifo-dir "$work/fifo" --tty --exec-id e2 long tty
check "task exec -d: detached process starts" \
  "${ctr[@]}" task exec --fifo-dir "$work/fifo" --detach --exec-id e3 long sleep 999
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
wait_for 10 "${ctr[@]}" task exec --fifo-dir "$work/fifo" --exec-id probe trapper test -e /tmp/ready || true
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

# --- CRI: the runtime handler "cdirun" (BinaryName, Root, container_annotations) ----------------
mkdir -p "$work/cri-pb" "$work/pod-logs"
protoc --proto_path="$repo/conformance/clients/cri" --python_out="$work/cri-pb" runtime_subset.proto
cri_root=$work/cdirun-cri-root/k8s.io
cri_checks() {
if pod=$("${cri[@]}" runp pod1 "$work/pod-logs" cdirun 2>&1) && [[ $pod =~ ^[0-9a-f]{64}$ ]]; then
  ok "RunPodSandbox with runtime_handler cdirun"
else
  fail "RunPodSandbox with runtime_handler cdirun" "$pod"
  return
fi
check "the sandbox's state is in the handler's Root (BinaryName ran)" test -f "$cri_root/$pod/state.json"
if cid=$("${cri[@]}" create "$pod" pod1 "$work/pod-logs" app "$image" \
  -a cdi.k8s.io/test=test.cdirun.dev/accel=accel0 -a io.example/unlisted=dropped -- sleep 1000 2>&1) &&
  [[ $cid =~ ^[0-9a-f]{64}$ ]]; then
  ok "CreateContainer"
else
  fail "CreateContainer" "$cid"
  return
fi
check "StartContainer" "${cri[@]}" start "$cid"
check_output "ContainerStatus: RUNNING" "CONTAINER_RUNNING 0" "${cri[@]}" status "$cid"
check_output "container_annotations: the listed annotation reaches config.json, the unlisted not" \
  "test.cdirun.dev/accel=accel0 null" \
  jq -r '"\(.annotations["cdi.k8s.io/test"]) \(.annotations["io.example/unlisted"])"' "$work/state/io.containerd.runtime.v2.task/k8s.io/$cid/config.json"
cri_pid=$(CDIRUN_CONFIG=$work/cdirun.toml "$cdirun" --root "$cri_root" state "$cid" | jq -r .pid)
cri_cg=$(awk -F: '$2 == "pids" {print $3}' "/proc/$cri_pid/cgroup")
# The pod's cgroup is the kubelet's (its limits and accounting): the default [slices] respect
# keeps kubelet paths as sent.
check_output "kubelet's cgroup_parent used as sent: the container is in its pod's cgroup" \
  "/kubepods/burstable/podpod1-uid/$cid" echo "$cri_cg"
# The CDI spec's env goes into config.json's process, the init's: an exec'd process gets the
# env the client sends (CRI builds it from its own copy of the spec), as with runc.
check "the CDI spec's env in the container's init" \
  grep -qz '^ACCEL_DRIVER=test-1.0$' "/proc/$cri_pid/environ"
check_output "ExecSync: the CDI device requested by annotation" "$node_probe_want" \
  "${cri[@]}" exec "$cid" sh -c "$node_probe"
check_output "ExecSync: exit status" "5" bash -c '"$@" exec '"$cid"' sh -c "exit 5"; echo $?' _ "${cri[@]}"
# UpdateContainerResources: the shim runs `cdirun update --resources -` with JSON on stdin.
check "UpdateContainerResources (update --resources - on stdin)" \
  "${cri[@]}" update "$cid" 67108864 512
check_output "update: limits in the container's cgroup" "67108864 512" bash -c \
  'echo "$(cat /sys/fs/cgroup/memory'"$cri_cg"'/memory.limit_in_bytes) $(cat /sys/fs/cgroup/cpu'"$cri_cg"'/cpu.shares)"'
check "ContainerStats: memory and CPU from the nested cgroup" bash -c '
  read -r mem cpu < <("$@" stats '"$cid"') || exit 1
  ((mem > 0 && cpu > 0)) || { echo "stats: working set $mem, cpu $cpu"; exit 1; }' _ "${cri[@]}"
check "StopContainer" "${cri[@]}" stop "$cid" 2
# The container shares the pod's pid namespace, so sleep is not its init and SIGTERM ends it.
check_output "ContainerStatus: EXITED by SIGTERM" "CONTAINER_EXITED 143" \
  "${cri[@]}" status "$cid"
check "RemoveContainer" "${cri[@]}" rm "$cid"
check_output "removed: no cdirun state, no cgroup" "" bash -c '
  ls '"$cri_root/$cid"' 2>/dev/null; find /sys/fs/cgroup -maxdepth 6 -path "*/kubepods/*/'"$cid"'"'
bad=$("${cri[@]}" create "$pod" pod1 "$work/pod-logs" bad "$image" \
  -a cdi.k8s.io/test=test.cdirun.dev/accel=nosuch -- true 2>&1) || true
check_fails_with "failing create: cdirun's message in the CRI error (StartContainer)" \
  'unresolvable CDI devices test\.cdirun\.dev/accel=nosuch \(annotation cdi\.k8s\.io/test\)' \
  "${cri[@]}" start "$bad"
"${cri[@]}" rm "$bad" >/dev/null 2>&1 || true
check "StopPodSandbox" "${cri[@]}" stopp "$pod"
check "RemovePodSandbox" "${cri[@]}" rmp "$pod"
check_output "pod removed: nothing left in the handler's Root" "" ls "$cri_root"
}
cri_checks

# --- hygiene --------------------------------------------------------------------------------------
stop_containerd
check_output "containerd and its shims stopped" "" clients_gone "$work"
check_output "no mounts left under the temp dir" "" bash -c 'awk -v dir='"$work"' '\''index($5, dir) == 1 {print $5}'\'' /proc/self/mountinfo'

summary
