# Shared by the client end-to-end suites (podman.sh, containerd.sh): counters and check functions,
# host-hygiene bookkeeping, a CDI test device, and a busybox image built without a registry.
# Source it after `set -euo pipefail`; it expects `repo` (the repository root) to be set.

. "$repo/scripts/lib.sh"

# The suites never read a terminal; a closed stdin would make the first file a check opens fd 0.
exec </dev/null

passed=0
failed=0

# ok NAME / fail NAME [DETAIL]: record one check's result on one line.
ok() {
  passed=$((passed + 1))
  echo "ok   $1"
}
fail() {
  failed=$((failed + 1))
  echo "FAIL $1"
  if [ -n "${2:-}" ]; then
    printf '%s\n' "$2" | sed 's/^/     | /' | head -n 20
  fi
}

# check NAME CMD...: the check passes when CMD exits 0; its output is shown only on failure.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$name"; else fail "$name" "$out"; fi
}

# check_output NAME WANT CMD...: CMD must exit 0 and print exactly WANT (trailing newlines and
# carriage returns from a terminal are ignored).
check_output() {
  local name=$1 want=$2 out
  shift 2
  if out=$("$@" 2>&1) && [ "$(printf '%s' "$out" | tr -d '\r')" = "$want" ]; then
    ok "$name"
  else
    fail "$name" "want: $want
got:  $out"
  fi
}

# check_fails_with NAME PATTERN CMD...: CMD must fail and its output must match the extended
# regular expression PATTERN (how a client shows the runtime's error message).
check_fails_with() {
  local name=$1 pattern=$2 out
  shift 2
  if out=$("$@" 2>&1); then
    fail "$name" "unexpectedly succeeded: $out"
  elif grep -Eq -- "$pattern" <<<"$out"; then
    ok "$name"
  else
    fail "$name" "output does not match /$pattern/: $out"
  fi
}

# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds; fails after SECONDS.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# summary: the last line every suite prints; the exit status says whether anything failed.
summary() {
  echo "$passed passed, $failed failed"
  ((failed == 0))
}

# Host paths the clients create on first use even when their state is redirected. remember_host
# notes which exist; forget_host removes those that did not (only when they are still empty of
# anything but client caches), so a suite leaves the host as it found it.
host_paths=(/run/containers /var/lib/containers /etc/containers/networks /run/cdirun /run/cdirun-state)
declare -A host_had=()
remember_host() {
  local path
  for path in "${host_paths[@]}"; do
    [ -e "$path" ] && host_had[$path]=1
  done
  return 0
}
forget_host() {
  local path
  for path in "${host_paths[@]}"; do
    [ -n "${host_had[$path]:-}" ] || rm -rf "$path"
  done
}

# Cgroup dirs named NAME directly under a hierarchy's root or under workload.slice that did not
# exist before: clients create parents (podman's libpod_parent, containerd's namespace dir) that
# they never remove. remember_cgroups NAME... / forget_cgroups remove only new, empty ones.
declare -A cgroup_had=()
cgroup_names=()
cgroup_candidates() {
  local name base
  for name in "${cgroup_names[@]}"; do
    for base in /sys/fs/cgroup/*/ /sys/fs/cgroup/*/workload.slice/; do
      [ -d "$base$name" ] && echo "${base%/}/$name"
    done
  done
  return 0
}
remember_cgroups() {
  cgroup_names=("$@")
  local dir
  while read -r dir; do
    cgroup_had[$dir]=1
  done < <(cgroup_candidates)
}
forget_cgroups() {
  local dir sub left deadline=$((SECONDS + 10))
  # A client process that just exited may not be reaped yet, which keeps its cgroup busy: retry.
  while :; do
    left=0
    while read -r dir; do
      [ -n "${cgroup_had[$dir]:-}" ] && continue
      # Deepest first; rmdir refuses a cgroup that still has processes or children.
      while read -r sub; do
        rmdir "$sub" 2>/dev/null || true
      done < <(find "$dir" -depth -type d 2>/dev/null)
      [ -d "$dir" ] && left=1
    done < <(cgroup_candidates)
    ((left && SECONDS < deadline)) || break
    sleep 0.2
  done
}

# write_cdi_spec DIR DEVICE_NODE: a CDI spec for kind test.cdirun.dev/accel with one device,
# accel0, whose node (made with mknod, char 195:254, nothing behind it) appears as /dev/accel0.
write_cdi_spec() {
  local dir=$1 node=$2
  mkdir -p "$dir"
  mknod "$node" c 195 254
  cat >"$dir/test-accel.yaml" <<YAML
cdiVersion: "0.6.0"
kind: test.cdirun.dev/accel
containerEdits:
  env: ["ACCEL_DRIVER=test-1.0"]
devices:
  - name: accel0
    containerEdits:
      deviceNodes:
        - path: /dev/accel0
          hostPath: $node
YAML
}

# The shell command a container runs to prove it got the device: the node exists with the right
# numbers, and writing to it fails with ENXIO (no driver behind 195:254), not EPERM, which shows
# the device cgroup lets the container use it. device_probe also prints the spec's env.
# shellcheck disable=SC2016
node_probe='ls -l /dev/accel0 | awk "{print \$1, \$5, \$6}"; echo x 2>&1 >/dev/accel0 | grep -o "No such device or address"'
node_probe_want='crw-r--r-- 195, 254
No such device or address'
# shellcheck disable=SC2016
device_probe="$node_probe"'; echo "$ACCEL_DRIVER"'
device_probe_want="$node_probe_want
test-1.0"

# podman_store DIR: podman's command line with every piece of its state under DIR. Writes
# DIR/containers.conf and DIR/storage.conf and prints the podman command to use (with env).
# Extra lines for containers.conf's [engine] table come on stdin.
podman_store() {
  local dir=$1
  mkdir -p "$dir"
  {
    cat <<CONF
# Every path podman writes under $dir; no systemd here, so cgroupfs and a file events log.
[containers]
# The host's hard limits are below podman's defaults and there is no CAP_SYS_RESOURCE.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
# No bridge network: nothing to set up (or leave behind) in the host's firewall or netns.
netns = "host"

[network]
network_config_dir = "$dir/networks"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/events.log"
tmp_dir = "$dir/tmp"
static_dir = "$dir/root/libpod"
volume_path = "$dir/root/volumes"
CONF
    cat
  } >"$dir/containers.conf"
  cat >"$dir/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$dir/root"
runroot = "$dir/runroot"
CONF
  echo "env CONTAINERS_CONF=$dir/containers.conf CONTAINERS_STORAGE_CONF=$dir/storage.conf" \
    "podman --root $dir/root --runroot $dir/runroot"
}

# client_pids DIR: PIDs of client processes (podman, conmon, containerd, its shims) whose command
# line names DIR, i.e. those a suite started with its temp dir.
client_pids() {
  local pid name
  # By name (a process name is at most 15 characters: containerd-shim-runc-v2 is containerd-shim).
  for pid in $(for name in podman conmon containerd containerd-shim; do pgrep -x "$name"; done); do
    # The process may be gone by now: then it is not a leftover either.
    { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$1" && echo "$pid"
  done
  return 0
}

# clients_gone DIR: waits up to 10 s for the client processes of DIR to exit; prints those left.
clients_gone() {
  local deadline=$((SECONDS + 10))
  while [ -n "$(client_pids "$1")" ] && ((SECONDS < deadline)); do
    sleep 0.1
  done
  client_pids "$1"
}

# podman_wipe DIR PODMAN...: removes every pod and container of the store, waits for the conmon and
# `podman container cleanup` processes that outlive them (they mount the store again), then
# unmounts anything still mounted under DIR (the store's own private bind mount).
podman_wipe() {
  local dir=$1 mnt deadline=$((SECONDS + 30))
  shift
  "$@" pod rm --all --force --time 0 >/dev/null 2>&1 || true
  "$@" rm --all --force --time 0 >/dev/null 2>&1 || true
  while [ -n "$(client_pids "$dir")" ] && ((SECONDS < deadline)); do
    sleep 0.1
  done
  mounts_under "$dir" | sort -r | while read -r mnt; do
    umount -l "$mnt" 2>/dev/null || true
  done
}

# import_busybox PODMAN... -- TAG DIR [CMD_JSON]: a busybox image in podman's store from a rootfs
# tar (podman import), with CMD_JSON (default ["/bin/sh"]) as its command and PATH set.
import_busybox() {
  local args=() tag dir cmd
  while [ "$1" != -- ]; do
    args+=("$1")
    shift
  done
  tag=$2 dir=$3 cmd=${4:-'["/bin/sh"]'}
  make_rootfs "$dir/rootfs"
  tar -C "$dir/rootfs" -cf "$dir/rootfs.tar" .
  "${args[@]}" import --quiet --change "CMD $cmd" --change "ENV PATH=/bin" "$dir/rootfs.tar" "$tag" >/dev/null
  rm -rf "$dir/rootfs" "$dir/rootfs.tar"
}

# mounts_under DIR: mount points under DIR still mounted (should be none after cleanup).
mounts_under() {
  awk -v dir="$1" 'index($5, dir) == 1 {print $5}' /proc/self/mountinfo
}

# cdirun_under_test: the binary the suites drive, CDIRUN_BIN or this checkout's release build;
# exits with a message when it is missing.
cdirun_under_test() {
  local bin
  bin=$(realpath -m "${CDIRUN_BIN:-$repo/target/release/cdirun}")
  if [ ! -x "$bin" ]; then
    echo "$bin is missing: build it with cargo build --release, or set CDIRUN_BIN" >&2
    exit 1
  fi
  echo "$bin"
}

# check_terminal NAME CMD...: CMD (a client's --tty run or exec of `tty` in the container) must
# print the container's own terminal, /dev/pts/0. script(1) gives the client the terminal it wants:
#  - the time limit wraps script, never the client inside it: timeout puts its command in a process group
#    of its own, which is not the terminal's foreground group unless script's shell execs timeout
#    (bash does, dash does not), and a client making the terminal raw from a background group is
#    stopped by SIGTTOU until the limit. script's shell is pinned, as $SHELL differs by host;
#  - script's stdin is /dev/null, because script prints nothing at all when its stdin is closed
#    (and the terminal may echo a control character before the output when that stdin ends).
check_terminal() {
  local name=$1 out rc=0
  shift
  out=$(SHELL=/bin/sh timeout 120 script -qec "$(printf '%q ' "$@")" /dev/null \
    </dev/null 2>&1 | tr -d '\r') || rc=$?
  if ((rc == 0)) && grep -q '/dev/pts/0$' <<<"$out"; then
    ok "$name"
  else
    fail "$name" "want exit 0 and a line /dev/pts/0 from: $*
got (exit $rc):  $out"
  fi
}
