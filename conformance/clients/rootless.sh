#!/usr/bin/env bash
# Rootless: podman run by an unprivileged user (subuid/subgid ranges, a busybox image from
# `podman import`) with cdirun and with crun in the same run, the same checks for both, and a
# direct `cdirun --rootless true run` of a `cdirun spec --rootless` bundle by that user. The
# suite makes the user and removes it with its processes and files at the end.
#
#   CDIRUN_BIN=target/release/cdirun conformance/clients/rootless.sh
#
# Prints one ok/FAIL line per check and "N passed, N failed" last; exits non-zero on a failure.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
. "$repo/conformance/clients/lib.sh"
require_root
for tool in podman crun runuser useradd userdel newuidmap newgidmap unshare busybox; do
  command -v "$tool" >/dev/null || { echo "rootless.sh: $tool is missing (scripts/install-deps.sh test)" >&2; exit 1; }
done

cdirun=$(cdirun_under_test)
user=cdirl$$
work=$(mktemp -d /tmp/cdirun-rootless.XXXXXX)
cdi_file=/etc/cdi/cdirun-rootless-$$.yaml
host_node=
delegated=()
uid=
cleanup() {
  set +e
  if [ -n "$uid" ]; then
    as_user podman rm --all --force --time 0 >/dev/null 2>&1
    # Every process of the suite's user (podman's pause process, conmon, containers), by pid.
    local pid deadline=$((SECONDS + 10))
    while pids=$(pgrep -u "$uid") && ((SECONDS < deadline)); do
      for pid in $pids; do kill -9 "$pid" 2>/dev/null; done
      sleep 0.2
    done
    local dir
    for dir in "${delegated[@]}"; do
      find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    userdel -r "$user" >/dev/null 2>&1
    sed -i "/^$user:/d" /etc/subuid /etc/subgid
    rm -rf "/run/user/$uid"
  fi
  rm -f "$cdi_file" "$host_node"
  rmdir /etc/cdi 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# --- the user -------------------------------------------------------------------------------
useradd --create-home --shell /bin/sh "$user"
uid=$(id -u "$user")
if ! grep -q "^$user:" /etc/subuid; then
  # A range after every range the host has handed out.
  start=$(awk -F: 'BEGIN {m = 100000} {e = $2 + $3; if (e > m) m = e} END {print m}' /etc/subuid /etc/subgid)
  echo "$user:$start:65536" >>/etc/subuid
  echo "$user:$start:65536" >>/etc/subgid
fi
mkdir -p "/run/user/$uid"
chown "$user:" "/run/user/$uid"
chmod 700 "/run/user/$uid"
chmod 755 "$work"

# as_user CMD...: CMD as the suite's user (at most 120 s), with its runtime dir and podman
# config. crun 1.8
# refuses a hybrid cgroup layout (a cgroup2 mount beside v1 controllers), so every call runs in
# a private mount namespace without /sys/fs/cgroup/unified; podman's rootless namespace,
# made by the first call, keeps that view.
as_user() {
  unshare -m --propagation private sh -c '
    if grep -q " /sys/fs/cgroup/unified " /proc/self/mountinfo; then umount /sys/fs/cgroup/unified; fi
    user=$0 uid=$1 work=$2
    shift 2
    exec timeout 120 runuser -u "$user" -- env HOME="/home/$user" XDG_RUNTIME_DIR="/run/user/$uid" \
      CONTAINERS_CONF="$work/containers.conf" "$@"' "$user" "$uid" "$work" "$@"
}

# cdirun's config: CDI specs under the temp dir (podman scrubs the runtime's env:
# conmon_env_vars carries CDIRUN_CONFIG).
write_cdi_spec "$work/cdi" "$work/accel0"
chmod 666 "$work/accel0"
# podman resolves --device vendor/class=name itself, from /etc/cdi (specs up to version 0.5.0),
# into a linux.devices entry; rootless, a runtime binds the host node at the same path (crun
# and cdirun alike), so this device's node is at its container path on the host too.
host_node=/dev/cdirun-rl$$
mknod "$host_node" c 195 254
chmod 666 "$host_node"
mkdir -p /etc/cdi
cat >"$cdi_file" <<YAML
cdiVersion: "0.5.0"
kind: test.cdirun.dev/rootless
containerEdits:
  env: ["ACCEL_DRIVER=test-1.0"]
devices:
  - name: accel0
    containerEdits:
      deviceNodes:
        - path: $host_node
YAML
printf '[cdi]\nspec-dirs = ["%s/cdi"]\n' "$work" >"$work/cdirun.toml"
cat >"$work/containers.conf" <<CONF
[containers]
# The host's hard limits are below podman's defaults.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
# No slirp4netns here: the host's network.
netns = "host"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
conmon_env_vars = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CDIRUN_CONFIG=$work/cdirun.toml"]
CONF
chmod -R a+rX "$work"
# The user opens the node (it shows as nobody's in the user namespace): world-writable here.
want_device=${device_probe_want/crw-r--r--/crw-rw-rw-}

image=localhost/busybox:rootless
mkdir -p "$work/image"
make_rootfs "$work/image/rootfs"
tar -C "$work/image/rootfs" -cf "$work/image/rootfs.tar" .
chmod -R a+rX "$work/image"
check "podman import as $user" \
  as_user podman import --quiet --change 'CMD ["/bin/sh"]' --change "ENV PATH=/bin" \
  "$work/image/rootfs.tar" "$image"
echo data >"$work/shared.txt"
chmod 644 "$work/shared.txt"

# The checks, once per runtime.
for runtime in crun "$cdirun"; do
  name=$(basename "$runtime")
  pm=(as_user podman --runtime "$runtime")
  check_output "$name: run as the user's root in a user namespace" "uid=0(root) gid=0(root)" \
    "${pm[@]}" run --rm "$image" sh -c 'id | cut -d" " -f1,2'
  check_output "$name: run --userns=keep-id keeps the user's uid" "$uid" \
    "${pm[@]}" run --rm --userns=keep-id "$image" id -u
  check_output "$name: a bind mount" "data" \
    "${pm[@]}" run --rm -v "$work/shared.txt:/mnt/shared.txt:ro" "$image" cat /mnt/shared.txt
  check_output "$name: --device" "1, 3" \
    "${pm[@]}" run --rm --device /dev/null:/dev/xnull "$image" \
    sh -c 'ls -l /dev/xnull | awk "{print \$5, \$6}"'
  check_output "$name: CDI device by --device vendor/class=name" "$want_device" \
    "${pm[@]}" run --rm --device test.cdirun.dev/rootless=accel0 "$image" \
    sh -c "${device_probe//\/dev\/accel0/$host_node}"
  ctr=rl-$name-$$
  check "$name: run --detach" "${pm[@]}" run --detach --name "$ctr" "$image" sleep 600
  check_output "$name: exec" "exec-ok" "${pm[@]}" exec "$ctr" echo exec-ok
  check "$name: stop" "${pm[@]}" stop --time 1 "$ctr"
  check_output "$name: stopped" "exited" "${pm[@]}" inspect --format '{{.State.Status}}' "$ctr"
  check "$name: rm" "${pm[@]}" rm "$ctr"
  check_fails_with "$name: gone after rm" "no such (container|object)" "${pm[@]}" inspect "$ctr"
done

pm=(as_user podman --runtime "$cdirun")
# cdirun's own CDI annotation (crun does not read it).
check_output "cdirun: CDI device by the cdi.k8s.io annotation" "$want_device" \
  "${pm[@]}" run --rm --annotation cdi.k8s.io/test=test.cdirun.dev/accel=accel0 "$image" \
  sh -c "$device_probe"
check_fails_with "cdirun: exclusive GPU request refused rootless in one line" \
  'sharing=exclusive cannot work rootless' \
  "${pm[@]}" run --rm --annotation io.cdirun.gpu.count=1 "$image" true
check "cdirun: state and claims under XDG_RUNTIME_DIR, nothing left" \
  bash -c '[ -d "$1/cdirun-state" ] && [ -z "$(ls "$1/cdirun")" ]' _ "/run/user/$uid"

# --- direct cdirun, no podman ----------------------------------------------------------------
direct=$work/direct
mkdir -p "$direct"
make_rootfs "$direct/rootfs"
chown -R "$user:" "$direct"
run_direct() {
  timeout 60 runuser -u "$user" -- env XDG_RUNTIME_DIR="/run/user/$uid" CDIRUN_CONFIG="$work/direct.toml" \
    sh -c 'cd "$1" && exec "$2" --rootless true run "$3"' _ "$direct" "$cdirun" "$1"
}
check "cdirun spec --rootless as $user" \
  runuser -u "$user" -- sh -c 'cd "$1" && "$2" spec --rootless' _ "$direct" "$cdirun"
runuser -u "$user" -- sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"sh", "-c", "id -u; echo direct-ok"/' \
  "$direct/config.json"
check "bundle edited to run without a terminal" grep -q direct-ok "$direct/config.json"
# Nothing delegated: one line saying what to delegate.
printf '' >"$work/direct.toml"
check_fails_with "direct run without a delegated slice is refused in one line" \
  '^rootless: slice /workload.slice is not delegated to uid [0-9]+' run_direct rl-direct-$$
# A delegated slice: cdirun places the container there, in every hierarchy it may.
slice=workload.slice/workload-rl$uid.slice
while read -r mount; do
  mkdir -p "$mount/$slice"
  delegated+=("$mount/$slice")
  if [ -f "$mount/workload.slice/cpuset.cpus" ]; then
    cat "$mount/workload.slice/cpuset.cpus" >"$mount/$slice/cpuset.cpus"
    cat "$mount/workload.slice/cpuset.mems" >"$mount/$slice/cpuset.mems"
  fi
  chown "$user:" "$mount/$slice" "$mount/$slice/cgroup.procs"
  [ -e "$mount/$slice/tasks" ] && chown "$user:" "$mount/$slice/tasks"
done < <(awk '$9 == "cgroup" || $9 == "cgroup2" {print $5}' /proc/self/mountinfo)
printf '[slices]\ndefault = "workload-rl%s.slice"\n' "$uid" >"$work/direct.toml"
chmod 644 "$work/direct.toml"
check_output "direct cdirun --rootless true run in a delegated slice" "0
direct-ok" run_direct rl-direct-$$
check "direct run left no state, cgroup or claim" \
  bash -c '[ -z "$(ls "$1/cdirun")" ] && ! ls -d /sys/fs/cgroup/*/"$2"/rl-direct-* 2>/dev/null &&
    ! grep -q rl-direct "$1/cdirun-state/cgroups.json"' _ "/run/user/$uid" "$slice"

summary
