#!/usr/bin/env bash
# Runs under the booted systemd that conformance/systemd/run.sh starts (hybrid layout). DIR
# holds the cdirun binary under test.
#
#   guest.sh DIR
#
# `--systemd-cgroup` containers of cdirun and runc, each checked through systemd: the scope
# unit exists, holds the container, is delegated and carries a strict device policy; device
# access and the container's limits are the same before and after `systemctl daemon-reload`
# (systemd re-applies every unit then, writing the v1 devices list and limits from the unit's
# properties); delete removes the unit and its cgroup.
set -uo pipefail
lab=$1
cdirun=$lab/cdirun
work=$(mktemp -d /tmp/systemd-suite.XXXXXX)
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
fail() {
  failed=$((failed + 1))
  echo "FAIL $1"
  [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/     | /' | head -n 20
  return 0
}
expect() { # NAME WANT GOT
  if [ "$2" = "$3" ]; then ok "$1"; else fail "$1" "want: $2
got:  $3"; fi
}
# expect_rt RT NAME WANT GOT: counts for cdirun; for the reference runtime it only reports (runc
# 1.1.5 loses NVIDIA-style nodes, which have no /dev/char link, on daemon-reload).
expect_rt() {
  local rt=$1
  shift
  if [ "$rt" = cdirun ]; then
    expect "$rt: $1" "$2" "$3"
  elif [ "$2" = "$3" ]; then
    echo "ref  $rt: $1: same"
  else
    echo "ref  $rt: $1: differs: $3"
  fi
}
runtime_bin() { case $1 in cdirun) echo "$cdirun" ;; *) command -v "$1" ;; esac; }
cleanup() {
  for rt in cdirun runc; do
    for id in $("$(runtime_bin $rt)" list -q 2>/dev/null); do
      "$(runtime_bin $rt)" delete --force "$id" >/dev/null 2>&1
    done
  done
  rm -rf "$work"
}
trap cleanup EXIT

expect "systemd is PID 1" "systemd" "$(cat /proc/1/comm)"
# Two fake GPUs (no driver behind 195:N: an allowed open fails with ENXIO, a denied one EPERM).
for n in 0 1; do [ -e /dev/nvidia$n ] || mknod -m 666 /dev/nvidia$n c 195 $n; done
# The host's disk: the device of this root filesystem.
disk="$(stat -c '%Hd %Ld' /)"

rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,dev,proc,sys,tmp,etc}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in sh dd mknod sleep cat grep; do ln -s busybox "$rootfs/bin/$applet"; done
probe_script='for d in "$@"; do
  if dd if=$d of=/dev/null bs=512 count=1 2>/tmp/err; then r=read
  elif grep -q "not permitted" /tmp/err; then r=denied
  else r=allowed; fi
  printf "%s=%s " "${d#/dev/}" "$r"
done'
probe() { # RT ID [NODES...] (default: both GPUs, the disk, another GPU made inside)
  local rt=$1 id=$2
  shift 2
  (($#)) || set -- /dev/nvidia0 /dev/nvidia1 /dev/disk0 /dev/gpu-other
  "$(runtime_bin "$rt")" exec "$id" sh -c "
    mknod /dev/disk0 b $disk 2>/dev/null; mknod /dev/gpu-other c 195 1 2>/dev/null
    $probe_script" sh "$@" 2>&1
}
# The container's v1 limits and devices list, read from the host side of its cgroup.
limits() { # CGROUP
  echo "memory=$(cat /sys/fs/cgroup/memory"$1"/memory.limit_in_bytes)" \
    "pids=$(cat /sys/fs/cgroup/pids"$1"/pids.max)" \
    "shares=$(cat /sys/fs/cgroup/cpu"$1"/cpu.shares)" \
    "devices=$(sort /sys/fs/cgroup/devices"$1"/devices.list | md5sum | cut -c1-8)"
}

want_probe="nvidia0=allowed nvidia1=denied disk0=denied gpu-other=denied "
for rt in cdirun runc; do
  id=sd-$rt
  dir=$work/$id
  mkdir -p "$dir"
  (cd "$dir" && runc spec)
  jq --arg rootfs "$rootfs" --arg cg "system.slice:$rt:$id" '
    .root.path = $rootfs | .root.readonly = false | .process.terminal = false
    | .process.args = ["sleep", "600"]
    | .process.capabilities |= with_entries(.value += ["CAP_MKNOD"])
    | .linux.cgroupsPath = $cg
    | .linux.namespaces |= (if any(.type == "cgroup") then . else . + [{type: "cgroup"}] end)
    | .linux.devices = [
        {path: "/dev/nvidia0", type: "c", major: 195, minor: 0, fileMode: 438},
        {path: "/dev/nvidia1", type: "c", major: 195, minor: 1, fileMode: 438}]
    | .linux.resources.devices += [{allow: true, type: "c", major: 195, minor: 0, access: "rw"}]
    | .linux.resources.memory = {limit: 67108864}
    | .linux.resources.pids = {limit: 100}
    | .linux.resources.cpu = {shares: 512}
  ' "$dir/config.json" >"$dir/c.json" && mv "$dir/c.json" "$dir/config.json"
  if ! "$(runtime_bin $rt)" --systemd-cgroup create --bundle "$dir" "$id" >"$work/$id.out" 2>&1 ||
    ! "$(runtime_bin $rt)" --systemd-cgroup start "$id" >>"$work/$id.out" 2>&1; then
    fail "$rt: creates and starts a --systemd-cgroup container" "$(cat "$work/$id.out")"
    continue
  fi
  pid=$("$(runtime_bin $rt)" state "$id" | jq -r .pid)
  cgroup=$(sed -n 's/^[0-9]*:name=systemd://p' "/proc/$pid/cgroup")
  unit=$(basename "$cgroup")
  echo "ref  $rt: unit $unit, cgroup $cgroup"
  expect_rt "$rt" "the scope unit is active, delegated and has a strict device policy" \
    "ActiveState=active Delegate=yes DevicePolicy=strict" \
    "$(systemctl show -p ActiveState -p Delegate -p DevicePolicy "$unit" | sort | xargs)"
  expect_rt "$rt" "systemd counts the container's process in its unit" "ControlGroup=$cgroup TasksCurrent=1" \
    "$(systemctl show -p ControlGroup -p TasksCurrent "$unit" | sort | xargs)"
  expect_rt "$rt" "in its cgroup namespace the container sees / in every hierarchy" "" \
    "$("$(runtime_bin $rt)" exec "$id" cat /proc/1/cgroup /proc/self/cgroup | grep -v ':/$')"
  before=$(probe $rt "$id")
  limits_before=$(limits "$cgroup")
  expect_rt "$rt" "the spec's devices and no other" "$want_probe" "$before"
  expect_rt "$rt" "the spec's limits" "memory=67108864 pids=100 shares=512" "${limits_before% devices=*}"
  systemctl daemon-reload
  expect_rt "$rt" "daemon-reload keeps device access" "$want_probe" "$(probe $rt "$id")"
  expect_rt "$rt" "daemon-reload keeps the limits and the devices list" "$limits_before" "$(limits "$cgroup")"
  "$(runtime_bin $rt)" update --pids-limit 200 --memory 134217728 "$id"
  systemctl daemon-reload
  expect_rt "$rt" "update, then daemon-reload: the updated limits stay" "memory=134217728 pids=200" \
    "$(limits "$cgroup" | cut -d' ' -f1-2)"
  "$(runtime_bin $rt)" delete --force "$id" >/dev/null 2>&1
  for _ in $(seq 50); do systemctl is-active -q "$unit" || break; sleep 0.1; done
  expect_rt "$rt" "delete takes the unit and its cgroup away" "inactive gone" \
    "$(systemctl is-active "$unit") $([ -d "/sys/fs/cgroup/systemd$cgroup" ] && echo there || echo gone)"
done


# --- cdirun's placement as systemd sees it ------------------------------------------------------
# plain_bundle ID CGROUPS_PATH [ANNOTATIONS_JSON]: a sleeping busybox container's bundle.
plain_bundle() {
  local dir=$work/$1
  mkdir -p "$dir"
  (cd "$dir" && runc spec)
  jq --arg rootfs "$rootfs" --arg cg "$2" --argjson ann "${3:-"{}"}" '
    .root.path = $rootfs | .root.readonly = false | .process.terminal = false
    | .process.args = ["sleep", "600"] | .linux.cgroupsPath = $cg | .annotations = $ann
    | .process.capabilities |= with_entries(.value += ["CAP_MKNOD"])
  ' "$dir/config.json" >"$dir/c.json" && mv "$dir/c.json" "$dir/config.json"
  echo "$dir"
}
# sd_run RT ID CGROUPS_PATH [ANNOTATIONS_JSON]: creates and starts it with --systemd-cgroup.
sd_run() {
  local rt=$1 id=$2 dir
  dir=$(plain_bundle "$id" "$3" "${4:-"{}"}")
  "$(runtime_bin "$rt")" --systemd-cgroup create --bundle "$dir" "$id" >"$work/$id.out" 2>&1 &&
    "$(runtime_bin "$rt")" --systemd-cgroup start "$id" >>"$work/$id.out" 2>&1
}
# cgroup_of RT ID: the container init's name=systemd cgroup.
cgroup_of() {
  local pid
  pid=$("$(runtime_bin "$1")" state "$2" | jq -r .pid)
  sed -n 's/^[0-9]*:name=systemd://p' "/proc/$pid/cgroup"
}
unit_state() { # UNIT: "ActiveState Slice" as systemd has them
  systemctl show -p ActiveState -p Slice "$1" | sort | cut -d= -f2 | xargs
}

# The acting owner's slice (workload.slice) and the kubelet's pod slice, used as sent.
for rt in cdirun runc; do
  for case in "workload.slice:$rt:sd-owned-$rt workload.slice /workload.slice/$rt-sd-owned-$rt.scope" \
    "kubepods-besteffort-pod0a1b.slice:cri-containerd:sd-kube-$rt kubepods-besteffort-pod0a1b.slice /kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0a1b.slice/cri-containerd-sd-kube-$rt.scope"; do
    read -r path slice want <<<"$case"
    id=${path##*:}
    if ! sd_run "$rt" "$id" "$path"; then
      fail "$rt: $path: creates and starts" "$(cat "$work/$id.out")"
      continue
    fi
    got=$(cgroup_of "$rt" "$id")
    expect_rt "$rt" "$path: the init is in the scope unit systemd made in $slice" \
      "$want active $slice" "$got $(unit_state "$(basename "$got")")"
    "$(runtime_bin "$rt")" delete --force "$id" >/dev/null 2>&1
  done
done

# Another owner's slice is refused before anything exists: no unit, no cgroup, no state.
id=sd-foreign
dir=$(plain_bundle "$id" "pact.slice:cdirun:$id")
cp "$dir/config.json" "$work/foreign.json"
if "$cdirun" --systemd-cgroup create --bundle "$dir" "$id" >"$work/$id.out" 2>&1; then
  fail "another owner's slice (pact.slice) is refused" "$(cat "$work/$id.out")"
else
  expect "the refusal names the slice and its owner" "yes" \
    "$(grep -q 'pact.slice' "$work/$id.out" && grep -q 'pact' "$work/$id.out" && echo yes)"
  expect "a refused slice leaves no unit, no cgroup, no state and config.json as it was" \
    "inactive none none same" \
    "$(systemctl is-active "cdirun-$id.scope") \
$(find /sys/fs/cgroup -path "*$id*" 2>/dev/null | head -n 1 | grep -q . && echo some || echo none) \
$("$cdirun" list -q | grep -qx "$id" && echo some || echo none) \
$(cmp -s "$dir/config.json" "$work/foreign.json" && echo same || echo changed)"
fi

# pause and resume through the unit's freezer.
for rt in cdirun runc; do
  id=sd-pause-$rt
  if ! sd_run "$rt" "$id" "workload.slice:$rt:$id"; then
    fail "$rt: pause container starts" "$(cat "$work/$id.out")"
    continue
  fi
  cg=$(cgroup_of "$rt" "$id")
  "$(runtime_bin "$rt")" pause "$id"
  paused="$("$(runtime_bin "$rt")" state "$id" | jq -r .status) $(cat "/sys/fs/cgroup/freezer$cg/freezer.state")"
  "$(runtime_bin "$rt")" resume "$id"
  resumed="$("$(runtime_bin "$rt")" state "$id" | jq -r .status) $(cat "/sys/fs/cgroup/freezer$cg/freezer.state")"
  expect_rt "$rt" "pause freezes the scope, resume thaws it" "paused FROZEN running THAWED" "$paused $resumed"
  "$(runtime_bin "$rt")" delete --force "$id" >/dev/null 2>&1
done

# A GPU from a CDI spec (NVIDIA's kind, 195:0 with no /dev/char link) keeps working across a
# daemon-reload: the failure NVIDIA documents as "Failed to initialize NVML: Unknown Error".
mkdir -p /etc/cdi
cat >/etc/cdi/systemd-suite.yaml <<'SPEC'
cdiVersion: "0.6.0"
kind: nvidia.com/gpu
devices:
  - name: "0"
    containerEdits:
      deviceNodes:
        - path: /dev/nvidia0
containerEdits:
  env:
    - NVIDIA_SUITE=1
SPEC
id=sd-cdi
if ! sd_run cdirun "$id" "workload.slice:cdirun:$id" '{"cdi.k8s.io/gpu": "nvidia.com/gpu=0"}'; then
  fail "a CDI GPU container starts" "$(cat "$work/$id.out")"
else
  want="nvidia0=allowed gpu-other=denied disk0=denied "
  expect "CDI GPU: opens, another GPU and the disk are denied" "$want" "$(probe cdirun "$id" /dev/nvidia0 /dev/gpu-other /dev/disk0)"
  # An open loop across the reload, as a CUDA process holds on: every open must succeed.
  "$cdirun" exec -d "$id" sh -c 'n=0; while [ $n -lt 100 ]; do
      if dd if=/dev/nvidia0 of=/dev/null bs=1 count=1 2>&1 | grep -q "not permitted"; then echo denied >>/tmp/loop; fi
      n=$((n + 1)); echo $n >/tmp/count; sleep 0.02; done; echo done >>/tmp/loop'
  systemctl daemon-reload
  for _ in $(seq 100); do "$cdirun" exec "$id" grep -q done /tmp/loop 2>/dev/null && break; sleep 0.1; done
  expect "CDI GPU: no open is denied during and after daemon-reload" "done" \
    "$("$cdirun" exec "$id" cat /tmp/loop 2>&1)"
  expect "CDI GPU: the same access after daemon-reload" "$want" "$(probe cdirun "$id" /dev/nvidia0 /dev/gpu-other /dev/disk0)"
  "$cdirun" delete --force "$id" >/dev/null 2>&1
fi
rm -f /etc/cdi/systemd-suite.yaml

# containerd inside this systemd: ctr's runc shim with cdirun as its binary and the systemd
# cgroup driver (the options a runtime handler's BinaryName and SystemdCgroup set).
if ! command -v containerd >/dev/null; then
  fail "containerd is installed in the guest"
else
  cd_dir=$work/containerd
  mkdir -p "$cd_dir"
  cat >"$cd_dir/config.toml" <<TOML
version = 2
root = "$cd_dir/root"
state = "$cd_dir/state"
[grpc]
  address = "$cd_dir/sock"
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
TOML
  containerd --config "$cd_dir/config.toml" >"$cd_dir/log" 2>&1 &
  cd_pid=$!
  for _ in $(seq 100); do [ -S "$cd_dir/sock" ] && break; sleep 0.1; done
  ctr=(ctr --address "$cd_dir/sock" -n suite)
  if "${ctr[@]}" run -d --rootfs --runc-binary "$cdirun" --runc-systemd-cgroup \
    --cgroup "workload.slice:cri-containerd:sd-ctr" "$rootfs" sd-ctr /bin/sleep 600 >"$work/ctr.out" 2>&1; then
    pid=$("${ctr[@]}" task ls | awk '$1 == "sd-ctr" {print $2}')
    cg=$(sed -n 's/^[0-9]*:name=systemd://p' "/proc/$pid/cgroup")
    expect "containerd: the container runs in its scope unit under workload.slice" \
      "/workload.slice/cri-containerd-sd-ctr.scope active workload.slice" \
      "$cg $(unit_state "$(basename "$cg")")"
    "${ctr[@]}" task kill -s KILL sd-ctr >/dev/null 2>&1
    for _ in $(seq 50); do "${ctr[@]}" task ls | grep -q sd-ctr || break; "${ctr[@]}" task delete sd-ctr >/dev/null 2>&1; sleep 0.1; done
    "${ctr[@]}" container delete sd-ctr >/dev/null 2>&1
    for _ in $(seq 50); do systemctl is-active -q cri-containerd-sd-ctr.scope || break; sleep 0.1; done
    expect "containerd: the unit is gone once the task is deleted" "inactive" \
      "$(systemctl is-active cri-containerd-sd-ctr.scope)"
  else
    fail "containerd: ctr run with cdirun and the systemd cgroup driver" "$(cat "$work/ctr.out")"
  fi
  kill "$cd_pid" 2>/dev/null
  wait "$cd_pid" 2>/dev/null
fi

echo "$passed passed, $failed failed"
((failed == 0))
