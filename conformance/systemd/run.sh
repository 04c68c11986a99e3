#!/usr/bin/env bash
# The systemd suite: boots the Debian 12 rootfs of conformance/cgroupv2 with systemd-nspawn
# (systemd 252 as PID 1, this host's hybrid layout: v1 controllers, name=systemd and a cgroup2
# mount without controllers) and runs conformance/systemd/guest.sh in it: `--systemd-cgroup`
# containers of cdirun beside runc's, checked through systemd itself.
#
#   CDIRUN_BIN=target/release/cdirun conformance/systemd/run.sh
#
# crun is not run here: crun 1.8 refuses a hybrid layout ("cgroups in hybrid mode not
# supported"). A unified (pure v2) systemd under nspawn is possible on this host only with a
# cgroup2 tree that has no controllers (the kernel binds them all to v1), so the pure v2 layout
# with a booted systemd is tested in the QEMU guest of conformance/cgroupv2 instead, with runc
# and crun beside cdirun.
#
# The host has no systemd, so nspawn runs with --register=no --keep-unit in a cgroup of its
# own below this script's, in every hierarchy; the booted systemd manages only that subtree.
# The v1 hierarchies are remounted writable inside and systemd re-executed so that it manages
# its controllers, as in a privileged container with a private cgroup namespace.
set -euo pipefail
exec </dev/null
repo=$(cd "$(dirname "$0")/../.." && pwd)
. "$repo/scripts/lib.sh"
require_root
"$repo/scripts/install-deps.sh" vm

cdirun=${CDIRUN_BIN:-$repo/target/release/cdirun}
[ -x "$cdirun" ] || { echo "systemd: no cdirun binary at $cdirun (build it first)" >&2; exit 1; }
vm=$repo/target/cgroupv2-vm
log() { printf '[%(%T)T] %s\n' -1 "$*" >&2; }

# The rootfs is the cgroup v2 suite's (made or reused there); this suite boots a copy.
ROOTFS_ONLY=1 "$repo/conformance/cgroupv2/run.sh"
root=$vm/nspawn-root
share=$vm/nspawn-share
rm -rf "$root" "$share" && cp -a "$vm/rootfs" "$root" && mkdir -p "$share"
cp "$cdirun" "$share/cdirun"
cp "$repo/conformance/systemd/guest.sh" "$share/guest.sh"
machine=cdirun-sd-$$

# The host side of the container's cgroups: one dir per hierarchy below this shell's own.
cg_list=$vm/nspawn.cgroups
: >"$cg_list"
while IFS=: read -r _ ctrl path; do
  case $ctrl in
    "") mnt=$(findmnt -nt cgroup2 -o TARGET | head -n 1) ;;
    name=systemd) mnt=/sys/fs/cgroup/systemd ;;
    *) mnt=/sys/fs/cgroup/${ctrl%%,*} ;;
  esac
  [ -d "$mnt" ] || continue
  dir=$mnt${path%/}/$machine
  mkdir -p "$dir" && echo "$dir" >>"$cg_list"
  if [ -f "$dir/cpuset.cpus" ]; then # a new v1 cpuset starts empty and refuses tasks
    cat "$(dirname "$dir")/cpuset.cpus" >"$dir/cpuset.cpus"
    cat "$(dirname "$dir")/cpuset.mems" >"$dir/cpuset.mems"
  fi
done </proc/self/cgroup

nspawn_pid=
leader=
stop_nspawn() {
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    [ -n "$leader" ] && kill -s RTMIN+4 "$leader" 2>/dev/null # systemd: poweroff
    for i in $(seq 300); do
      kill -0 "$nspawn_pid" 2>/dev/null || break
      ((i == 200)) && kill -TERM "$nspawn_pid" 2>/dev/null
      ((i == 299)) && kill -KILL "$nspawn_pid" 2>/dev/null
      sleep 0.1
    done
  fi
  while read -r dir; do
    [ -d "$dir" ] && find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null
  done <"$cg_list"
  rm -rf "$root" "$share"
}
trap stop_nspawn EXIT

(
  while read -r dir; do echo "$BASHPID" >"$dir/cgroup.procs"; done <"$cg_list"
  exec systemd-nspawn --boot --register=no --keep-unit --machine="$machine" -D "$root" \
    --console=read-only --capability=all --system-call-filter="@keyring bpf" \
    --bind-ro="$share":/lab >"$vm/nspawn.console" 2>&1 </dev/null
) &
nspawn_pid=$!
for _ in $(seq 100); do
  leader=$(ps -o pid= --ppid "$nspawn_pid" 2>/dev/null | head -n 1 | tr -d ' ' || true)
  [ -n "$leader" ] && [ "$(cat "/proc/$leader/comm" 2>/dev/null)" = systemd ] && break
  sleep 0.1
done
[ -n "$leader" ] || { cat "$vm/nspawn.console"; echo "0 passed, 1 failed"; exit 1; }
inside() { nsenter --target "$leader" --all -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
start=$SECONDS
until inside systemctl is-system-running --wait >/dev/null 2>&1 || ((SECONDS - start > 60)); do sleep 0.5; done
inside sh -c 'for m in /sys/fs/cgroup/*; do mountpoint -q "$m" && mount -o remount,bind,rw "$m"; done; true'
inside systemctl daemon-reexec
inside systemctl is-system-running --wait >/dev/null 2>&1 || true
log "systemd booted under nspawn in $((SECONDS - start)) s: $(inside systemctl is-system-running 2>&1)"

set +e
# As a service of the booted systemd, the way containerd or kubelet run cdirun on a node: a
# process nsenter put there stays in this host's cgroup, outside the machine's tree.
inside systemd-run --quiet --wait --pipe --collect --unit=cdirun-suite bash /lab/guest.sh /lab
rc=$?
exit "$rc"
