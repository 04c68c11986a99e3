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
probe() { # RT ID
  "$(runtime_bin "$1")" exec "$2" sh -c "
    mknod /dev/disk0 b $disk 2>/dev/null; mknod /dev/gpu-other c 195 1 2>/dev/null
    $probe_script" sh /dev/nvidia0 /dev/nvidia1 /dev/disk0 /dev/gpu-other 2>&1
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

echo "$passed passed, $failed failed"
((failed == 0))
