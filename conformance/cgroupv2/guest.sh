#!/usr/bin/env bash
# Runs inside the cgroup v2 guest that conformance/cgroupv2/run.sh boots (systemd as PID 1, a
# pure cgroup2 hierarchy with every controller). DIR holds the cdirun binary under test.
#
#   guest.sh DIR
#
# Device rules are enforced on cgroup v2 only by an eBPF program attached to the container's
# cgroup (and, with the systemd driver, by the scope unit's DevicePolicy/DeviceAllow). Each case
# starts a container with CAP_MKNOD and reads devices from inside it: a node the spec allows
# (open fails with ENXIO: no driver behind 195:N here), a node in linux.devices that the rules
# do not allow, and a node it makes itself for the guest's root disk. cdirun must deny exactly
# what runc and crun deny, with both drivers, after `update`, and (systemd) after a
# daemon-reload. runc's and crun's results are printed beside cdirun's for comparison.
set -uo pipefail
lab=$1
cdirun=$lab/cdirun
work=$(mktemp -d /tmp/cgroupv2.XXXXXX)
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

cleanup() {
  for rt in cdirun runc crun; do
    for id in $("$(runtime_bin $rt)" list -q 2>/dev/null); do
      "$(runtime_bin $rt)" delete --force "$id" >/dev/null 2>&1
    done
  done
  rm -rf "$work" /etc/cdi/cgroupv2-test.yaml
}
runtime_bin() { case $1 in cdirun) echo "$cdirun" ;; *) command -v "$1" ;; esac; }
trap cleanup EXIT

expect "the guest runs a pure cgroup v2 hierarchy" "cgroup2fs" "$(stat -fc %T /sys/fs/cgroup)"
expect "cgroup v2 has the memory, pids and cpu controllers" "cpu memory pids" \
  "$(tr ' ' '\n' </sys/fs/cgroup/cgroup.controllers | grep -xE 'cpu|memory|pids' | sort | xargs)"

# The guest's root disk: the block device a container must never open.
disk=$(stat -Lc '%t %T' /dev/vda | { read -r ma mi; echo "$((16#$ma)) $((16#$mi))"; })
# Host nodes for two fake GPUs (NVIDIA's char major 195; no driver, so an allowed open gives
# ENXIO), and a CDI spec naming them.
for n in 0 1; do [ -e /dev/nvidia$n ] || mknod -m 666 /dev/nvidia$n c 195 $n; done
mkdir -p /etc/cdi
cat >/etc/cdi/cgroupv2-test.yaml <<'YAML'
cdiVersion: "0.6.0"
kind: nvidia.com/gpu
devices:
  - name: "0"
    containerEdits:
      deviceNodes: [{path: /dev/nvidia0}]
  - name: "1"
    containerEdits:
      deviceNodes: [{path: /dev/nvidia1}]
YAML

# The busybox rootfs every bundle shares.
rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,dev,proc,sys,tmp,etc}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in sh dd mknod sleep cat grep rm; do ln -s busybox "$rootfs/bin/$applet"; done

# What a container reads: for each node, `read` (the read worked), `allowed` (the cgroup let the
# open through: ENXIO or another driver error) or `denied` (EPERM from the device rules).
# /dev/disk0 is made inside the container with the guest disk's numbers; /dev/gpu-other with
# the GPU number the container was not given.
probe_script='for d in "$@"; do
  if dd if=$d of=/dev/null bs=512 count=1 2>/tmp/err; then r=read
  elif grep -q "not permitted" /tmp/err; then r=denied
  else r=allowed; fi
  printf "%s=%s " "${d#/dev/}" "$r"
done'

# bundle NAME ANNOTATIONS_JSON: a bundle whose process has CAP_MKNOD, with the two GPU nodes in
# linux.devices and only /dev/nvidia0 allowed by linux.resources.devices.
bundle() {
  local dir=$work/$1
  mkdir -p "$dir"
  (cd "$dir" && runc spec)
  jq --argjson ann "$2" --arg rootfs "$rootfs" '
    .root.path = $rootfs | .process.terminal = false | .process.args = ["sleep", "600"] | .root.readonly = false
    | .process.capabilities |= with_entries(.value += ["CAP_MKNOD"])
    | .annotations = $ann
    | .linux.namespaces |= (if any(.type == "cgroup") then . else . + [{type: "cgroup"}] end)
    | .linux.devices = [
        {path: "/dev/nvidia0", type: "c", major: 195, minor: 0, fileMode: 438},
        {path: "/dev/nvidia1", type: "c", major: 195, minor: 1, fileMode: 438}]
    | .linux.resources.devices += [{allow: true, type: "c", major: 195, minor: 0, access: "rw"}]
  ' "$dir/config.json" >"$dir/config.json.new" && mv "$dir/config.json.new" "$dir/config.json"
  echo "$dir"
}

# probe RT ID NODES...: makes /dev/disk0 (and /dev/gpu-other as 195:1 unless told) inside, then
# reads every node.
probe() {
  local rt=$1 id=$2 other=${OTHER_GPU:-1}
  shift 2
  "$(runtime_bin "$rt")" exec "$id" sh -c "
    mknod /dev/disk0 b $disk 2>/dev/null; mknod /dev/gpu-other c 195 $other 2>/dev/null
    $probe_script" sh "$@" 2>&1
}

# cgroups_path RT DRIVER ID
cgroups_path() {
  case $2 in
    cgroupfs) echo "/cgroupv2-test/$1-$3" ;;
    systemd) echo "system.slice:$1:$3" ;;
  esac
}

start_container() { # RT DRIVER ID BUNDLE
  local rt=$1 driver=$2 id=$3 dir=$4 flags=()
  [ "$driver" = systemd ] && flags=(--systemd-cgroup)
  jq --arg p "$(cgroups_path "$rt" "$driver" "$id")" '.linux.cgroupsPath = $p' "$dir/config.json" \
    >"$dir/config.json.new" && mv "$dir/config.json.new" "$dir/config.json"
  "$(runtime_bin "$rt")" "${flags[@]}" create --bundle "$dir" "$id" &&
    "$(runtime_bin "$rt")" "${flags[@]}" start "$id"
}

stop_container() { # RT ID
  "$(runtime_bin "$1")" delete --force "$2" >/dev/null 2>&1
}

want_basic="nvidia0=allowed nvidia1=denied disk0=denied gpu-other=denied "
nodes=(/dev/nvidia0 /dev/nvidia1 /dev/disk0 /dev/gpu-other)
for driver in cgroupfs systemd; do
  declare -A got=()
  for rt in cdirun runc crun; do
    id=$rt-$driver
    dir=$(bundle "$id" '{}')
    # The container's stdio is a file: a pipe would stay open as long as it runs.
    if ! start_container "$rt" "$driver" "$id" "$dir" >"$work/$id.out" 2>&1; then
      out=$(cat "$work/$id.out")
      [ "$rt" = cdirun ] && fail "$driver: cdirun creates the container" "$out"
      echo "ref  $rt $driver: cannot start: $out"
      continue
    fi
    got[$rt]=$(probe "$rt" "$id" "${nodes[@]}")
    # Lines of /proc/PID/cgroup, the init's and an exec'd process's, that show a host path.
    got[$rt.cgns]=$("$(runtime_bin "$rt")" exec "$id" cat /proc/1/cgroup /proc/self/cgroup | grep -v ':/$')
    "$(runtime_bin "$rt")" update --pids-limit 200 "$id" >/dev/null 2>&1
    got[$rt.update]=$(probe "$rt" "$id" "${nodes[@]}")
    if [ "$driver" = systemd ]; then
      pid=$("$(runtime_bin "$rt")" state "$id" | jq -r .pid)
      unit=$(basename "$(sed -n 's/^0:://p' "/proc/$pid/cgroup")")
      got[$rt.unit]=$(systemctl show -p DevicePolicy -p DeviceAllow "$unit" | xargs)
      systemctl daemon-reload
      got[$rt.reload]=$(probe "$rt" "$id" "${nodes[@]}")
    fi
    stop_container "$rt" "$id"
    for k in "" .cgns .update .unit .reload; do
      [ -n "${got[$rt$k]:-}" ] && echo "ref  $rt $driver${k:+ ($k)}: ${got[$rt$k]}"
    done
  done
  expect "$driver: cdirun denies the undeclared, the unallowed and the host's disk" "$want_basic" "${got[cdirun]:-}"
  expect "$driver: cdirun denies what runc denies" "${got[runc]:-runc failed}" "${got[cdirun]:-}"
  expect "$driver: cdirun denies what crun denies" "${got[crun]:-crun failed}" "${got[cdirun]:-}"
  expect "$driver: the same rules after update" "$want_basic" "${got[cdirun.update]:-}"
  expect "$driver: in its cgroup namespace the container sees / (\"0::/\")" "" "${got[cdirun.cgns]-not run}"
  if [ "$driver" = systemd ]; then
    expect "systemd: the scope unit carries a strict device policy with the GPU allowed" \
      "yes yes" "$(grep -q 'DevicePolicy=strict' <<<"${got[cdirun.unit]:-}" && echo yes) $(grep -q '/dev/char/195:0 rw' <<<"${got[cdirun.unit]:-}" && echo yes)"
    expect "systemd: daemon-reload neither widens nor narrows access (195:0 has no /dev/char link)" \
      "$want_basic" "${got[cdirun.reload]:-}"
  fi
  unset got
done

# CDI and the GPU ledger: two containers each get one GPU exclusively; neither can open the
# other's, even with a node it makes itself.
for driver in cgroupfs systemd; do
  ids=()
  for n in 0 1; do
    id=gpu$n-$driver
    dir=$work/$id
    mkdir -p "$dir"
    (cd "$dir" && runc spec)
    jq --arg rootfs "$rootfs" '.root.path = $rootfs | .process.terminal = false | .process.args = ["sleep", "600"] | .root.readonly = false
      | .process.capabilities |= with_entries(.value += ["CAP_MKNOD"])
      | .annotations = {"io.cdirun.gpu.count": "1"}' "$dir/config.json" >"$dir/c.json" &&
      mv "$dir/c.json" "$dir/config.json"
    if start_container cdirun "$driver" "$id" "$dir" >"$work/$id.out" 2>&1; then
      ids+=("$id")
    else
      fail "$driver: count=1 container $n starts" "$(cat "$work/$id.out")"
    fi
  done
  if ((${#ids[@]} == 2)); then
    a=$(OTHER_GPU=1 probe cdirun "${ids[0]}" /dev/nvidia0 /dev/gpu-other /dev/disk0)
    b=$(OTHER_GPU=0 probe cdirun "${ids[1]}" /dev/nvidia1 /dev/gpu-other /dev/disk0)
    expect "$driver: exclusive GPU 0 opens, GPU 1 (another container's) is denied" \
      "nvidia0=allowed gpu-other=denied disk0=denied " "$a"
    # The second container's GPU is 1, injected under its own path.
    expect "$driver: exclusive GPU 1 opens, GPU 0 (another container's) is denied" \
      "nvidia1=allowed gpu-other=denied disk0=denied " "$b"
  fi
  for id in "${ids[@]}"; do stop_container cdirun "$id"; done
done

# Rootless on cgroup v2: an unprivileged user runs a `spec --rootless` bundle directly, with no
# cgroup delegated to it. cdirun skips cgroup setup as runc does, so both print the same.
user=cdirunrl
useradd --no-create-home "$user" 2>/dev/null
chmod 755 "$work"
for rt in cdirun runc; do
  dir=$work/rootless-$rt
  mkdir -p "$dir" "$work/xdg-$rt"
  cp -a "$rootfs" "$dir/rootfs"
  ln -sf busybox "$dir/rootfs/bin/id"
  chown -R "$user:" "$dir" "$work/xdg-$rt"
  (cd "$dir" && runuser -u "$user" -- env XDG_RUNTIME_DIR="$work/xdg-$rt" "$(runtime_bin $rt)" spec --rootless)
  jq '.process.terminal = false | .process.args = ["sh", "-c", "id -u; echo rootless-ok"]' \
    "$dir/config.json" >"$dir/c.json" && mv "$dir/c.json" "$dir/config.json" && chown "$user:" "$dir/config.json"
  got=$(cd "$dir" && timeout 60 runuser -u "$user" -- \
    env XDG_RUNTIME_DIR="$work/xdg-$rt" "$(runtime_bin $rt)" --rootless true run "rl-$rt" 2>&1)
  expect "$rt: rootless run by an unprivileged user without a delegated cgroup" "0
rootless-ok" "$got"
done
expect "cdirun: rootless state under XDG_RUNTIME_DIR and gone after run" "" \
  "$(ls "$work/xdg-cdirun/cdirun" 2>&1)"
userdel "$user" 2>/dev/null

echo "$passed passed, $failed failed"
((failed == 0))
