#!/usr/bin/env bash
# The Docker engine (Debian's docker.io 20.10) driving cdirun end to end, with runc in the same
# run for comparison. A private dockerd (its own data root, exec root, socket, pidfile and bridge)
# on a private containerd (its own config, root, state and socket), both stopped by PID at the
# end; cdirun is registered by the daemon.json that `cdirun install docker --config` writes. The
# busybox image comes from `docker import` (no registry). Every check of the matrix runs once per
# runtime and is read from inside the container and from the host.
#
#   CDIRUN_BIN=target/release/cdirun conformance/clients/docker.sh
#
# Prints one ok/FAIL line per check and "N passed, N failed" last; exits non-zero on a failure.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
. "$repo/conformance/clients/lib.sh"
require_root
"$repo/scripts/install-deps.sh" test

cdirun=$(cdirun_under_test)
# dockerd's own client: /usr/local/bin may hold a newer docker CLI than this daemon speaks.
docker_bin=/usr/bin/docker
for tool in /usr/sbin/dockerd "$docker_bin" /usr/bin/docker-init containerd containerd-shim-runc-v2 \
  runc script iptables iptables-save ip jq busybox /usr/bin/python3 podman md5sum; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (scripts/install-deps.sh test)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/cdirun-docker.XXXXXX)
bridge=dk-br0
bridge_ip=172.29.77.1
# dockerd writes its trust key to /etc/docker/key.json whatever its other paths are.
host_paths+=(/run/containerd /var/lib/containerd /opt/containerd /run/docker /var/lib/docker /etc/docker/key.json)
remember_host
remember_cgroups docker
containerd_pid=
dockerd_pid=
forward_before=$(sysctl -n net.ipv4.ip_forward)
iptables-save >"$work/iptables.before" 2>/dev/null || true
dk=(timeout 120 "$docker_bin" -H "unix://$work/docker.sock")
dk_bare=("$docker_bin" -H "unix://$work/docker.sock")

# start_dockerd [EXTRA...]: dockerd on the private containerd; waits until it answers.
start_dockerd() {
  PATH=$work/bin:$PATH /usr/sbin/dockerd --config-file "$work/daemon.json" \
    --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/docker.pid" \
    -H "unix://$work/docker.sock" --containerd "$work/containerd.sock" \
    --bridge "$bridge" "$@" >>"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  wait_for 60 "${dk[@]}" version
}
# stop_dockerd: SIGTERM by PID, then wait for it (dockerd stops its containers unless
# live-restore is on).
stop_dockerd() {
  [ -n "$dockerd_pid" ] || return 0
  kill "$dockerd_pid" 2>/dev/null || true
  local deadline=$((SECONDS + 60))
  while kill -0 "$dockerd_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  kill -KILL "$dockerd_pid" 2>/dev/null || true
  wait "$dockerd_pid" 2>/dev/null || true
  dockerd_pid=
}
# remove_iptables: the rules and chains dockerd added (those absent before the suite ran).
remove_iptables() {
  local table line chain
  for table in filter nat; do
    iptables-save -t "$table" 2>/dev/null | grep -E '^-A .*(DOCKER|'"$bridge"')' |
      while read -r line; do
        grep -qxF -- "$line" "$work/iptables.before" && continue
        # shellcheck disable=SC2086
        iptables -t "$table" ${line/#-A/-D} 2>/dev/null || true
      done
    for chain in $(iptables-save -t "$table" 2>/dev/null | awk '/^:DOCKER/ {print substr($1, 2)}'); do
      grep -q "^:$chain " "$work/iptables.before" && continue
      iptables -t "$table" -F "$chain" 2>/dev/null || true
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}
cleanup() {
  set +e
  if [ -n "$dockerd_pid" ]; then
    "${dk[@]}" rm --force $("${dk[@]}" ps --all --quiet) >/dev/null 2>&1
  fi
  stop_dockerd
  if [ -n "$containerd_pid" ]; then
    kill "$containerd_pid" 2>/dev/null
    wait "$containerd_pid" 2>/dev/null
  fi
  local shim
  for shim in $(client_pids "$work/containerd.sock"); do kill -KILL "$shim" 2>/dev/null; done
  mounts_under "$work" | sort -r | while read -r mnt; do umount -l "$mnt"; done
  ip link delete "$bridge" 2>/dev/null
  remove_iptables
  sysctl -qw net.ipv4.ip_forward="$forward_before"
  forget_cgroups
  forget_host
  rm -rf "$work"
}
trap cleanup EXIT

# --- cdirun's config, a CDI spec for two NVIDIA GPUs made of mknod'd nodes ---------------------
mkdir -p "$work/cdi" "$work/bin" "$work/vol"
mknod "$work/nvidia0" c 195 0
mknod "$work/nvidia1" c 195 1
mknod "$work/nvidiactl" c 195 255
cat >"$work/cdi/nvidia.yaml" <<YAML
cdiVersion: "0.6.0"
kind: nvidia.com/gpu
containerEdits:
  deviceNodes:
    - {path: /dev/nvidiactl, hostPath: $work/nvidiactl}
devices:
  - name: "0"
    containerEdits:
      deviceNodes: [{path: /dev/nvidia0, hostPath: $work/nvidia0}]
  - name: "1"
    containerEdits:
      deviceNodes: [{path: /dev/nvidia1, hostPath: $work/nvidia1}]
  - name: all
    containerEdits:
      deviceNodes:
        - {path: /dev/nvidia0, hostPath: $work/nvidia0}
        - {path: /dev/nvidia1, hostPath: $work/nvidia1}
YAML
cat >"$work/cdirun.toml" <<TOML
state-dir = "$work/cdirun-state"
[cdi]
spec-dirs = ["$work/cdi"]
TOML
# Docker registers its NVIDIA driver (--gpus) only when nvidia-container-runtime-hook is on its
# PATH; cdirun's stand-in serves there (see docs/docker.md).
ln -s "$repo/packaging/docker/nvidia-container-runtime-hook" "$work/bin/nvidia-container-runtime-hook"

# --- daemon.json: the suite's own settings, then `cdirun install docker` adds the runtime -----
cat >"$work/daemon.json" <<JSON
{
  "exec-opts": ["native.cgroupdriver=cgroupfs"],
  "live-restore": true,
  "log-driver": "json-file",
  "storage-driver": "overlay2",
  "userland-proxy": true
}
JSON
chmod 600 "$work/daemon.json"
check_output "install docker --dry-run: prints the entry, writes nothing" "$cdirun 600 absent" bash -c '
  p=$("$1" install docker --config "$2" --dry-run | jq -r ".runtimes.cdirun.path")
  echo "$p $(stat -c %a "$2") $(grep -q runtimes "$2" && echo present || echo absent)"' _ "$cdirun" "$work/daemon.json"
check_output "install docker --config: the runtime added, other settings and the mode kept" \
  "$cdirun true cgroupfs 600" bash -c '
  "$1" install docker --config "$2" >/dev/null &&
  jq -r "\"\(.runtimes.cdirun.path) \(.\"live-restore\") \(.\"exec-opts\"[0] | sub(\".*=\"; \"\"))\"" "$2" | tr -d "\n"
  echo " $(stat -c %a "$2")"' _ "$cdirun" "$work/daemon.json"
check_output "install docker again: nothing changed" "already registered" bash -c '
  before=$(md5sum <"$2"); out=$("$1" install docker --config "$2")
  [ "$(md5sum <"$2")" = "$before" ] && grep -o "already registered" <<<"$out"' _ "$cdirun" "$work/daemon.json"
check_fails_with "install docker: a malformed daemon.json is named, not overwritten" \
  "^$work/bad.json:1:14: invalid JSON: expected ident" bash -c 'echo "{\"debug\": tru}" >"$2"; "$1" install docker --config "$2"' \
  _ "$cdirun" "$work/bad.json"

# --- containerd, then dockerd ----------------------------------------------------------------------
cat >"$work/containerd.toml" <<TOML
version = 2
root = "$work/containerd-root"
state = "$work/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$work/containerd.sock"
[ttrpc]
  address = "$work/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$work/opt"
TOML
# cdirun's config reaches it through containerd's environment, which the shims inherit.
CDIRUN_CONFIG=$work/cdirun.toml containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
containerd_pid=$!
wait_for 30 test -S "$work/containerd.sock" || { fail "containerd starts" "$(tail -n 20 "$work/containerd.log")"; summary; }
ip link add "$bridge" type bridge
ip addr add "$bridge_ip/24" dev "$bridge"
ip link set "$bridge" up
if ! start_dockerd; then
  fail "dockerd starts" "$(tail -n 30 "$work/dockerd.log")"
  summary
fi
ok "dockerd starts with its own data root, exec root, socket, pidfile and bridge"
check_output "docker info: the cdirun runtime from daemon.json beside runc, cgroupfs, live restore" \
  "$cdirun runc cgroupfs true" "${dk[@]}" info --format \
  '{{(index .Runtimes "cdirun").Path}} {{(index .Runtimes "runc").Path}} {{.CgroupDriver}} {{.LiveRestoreEnabled}}'

image=localhost/busybox:cdirun
make_rootfs "$work/rootfs"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
rm -rf "$work/rootfs"
check "docker import a busybox rootfs" "${dk[@]}" import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' \
  "$work/rootfs.tar" "$image"

# pid_of NAME / cgroup_of NAME: the container's init and its cgroup (pids hierarchy) on the host.
pid_of() { "${dk[@]}" inspect --format '{{.State.Pid}}' "$1"; }
cgroup_of() { awk -F: '$2 == "pids" {print $3}' "/proc/$(pid_of "$1")/cgroup"; }
state_of() { "${dk[@]}" inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$1"; }
# shellcheck disable=SC2016
self_cgroup='awk -F: '\''$2 == "pids" {print $3}'\'' /proc/self/cgroup'

# check_tty NAME DOCKER-ARGS...: docker -it; the output must end with a line /dev/pts/0 (see
# lib.sh).
check_tty() {
  local name=$1
  shift
  check_terminal "$name" "${dk_bare[@]}" "$@"
}

port=18080
# matrix RUNTIME: the checks every runtime must pass alike, named "[RUNTIME] ...". Containers are
# named dk-<runtime>-<what>.
matrix() {
  local rt=$1 t="[$1]" n="dk-$1" cg cgre pid old
  local run=("${dk[@]}" run --runtime "$rt")
  port=$((port + 1))
  # cdirun nests the container's cgroup under workload.slice; runc keeps docker's /docker/<id>.
  if [ "$rt" = cdirun ]; then cgre='^/workload\.slice/docker/[0-9a-f]{64}$'; else cgre='^/docker/[0-9a-f]{64}$'; fi

  # run --rm, exit status
  check "$t run --rm: output, and the cgroup says which runtime ran it" bash -c '
    out=$("${@:3}" --rm '"$image"' sh -c "echo hello; $2") || exit 1
    [ "$(sed -n 1p <<<"$out")" = hello ] && [[ $(sed -n 2p <<<"$out") =~ $1 ]] || { echo "$out"; exit 1; }' \
    _ "$cgre" "$self_cgroup" "${run[@]}"
  check_output "$t run --rm: the container's exit status" "3" \
    bash -c '"$@" --rm '"$image"' sh -c "exit 3"; echo $?' _ "${run[@]}"
  check_output "$t run -i: piped stdin" "piped" bash -c 'echo piped | "$@" --rm -i '"$image"' cat' _ "${run[@]}"
  check_tty "$t run -it: a terminal" run --runtime "$rt" --rm -it "$image" tty

  # -d, logs, exec, top, stats, pause/unpause
  check "$t run -d" "${run[@]}" -d --name "$n-long" -e FOO=bar -w /tmp "$image" sh -c 'echo started; exec sleep 1000'
  cg=$(cgroup_of "$n-long")
  check_output "$t inspect: running; the host sees the cgroup" "running 0 ok" bash -c '
    echo "$(cat /dev/stdin) $([[ $1 =~ $2 ]] && grep -qx "$3" /sys/fs/cgroup/pids$1/cgroup.procs && echo ok)"' \
    _ "$cg" "$cgre" "$(pid_of "$n-long")" <<<"$(state_of "$n-long")"
  check_output "$t logs" "started" "${dk[@]}" logs "$n-long"
  check_output "$t exec: env, working dir, exec -e and the exit status" "bar /tmp 1
4" bash -c '"$@" exec -e X=1 '"$n-long"' sh -c "echo \"\$FOO \$(pwd) \$X\"; exit 4"; echo $?' _ "${dk[@]}"
  # Docker 20.10 gives 126 for every exec that cannot start, whatever the runtime says.
  check_output "$t exec of a missing command: docker's status 126 and the runtime's reason" \
    "126 stat /nonexistent: no such file or directory" bash -c '
    out=$("$@" exec '"$n-long"' /nonexistent 2>&1); echo "$? $(grep -o "stat /nonexistent: no such file or directory" <<<"$out")"' \
    _ "${dk[@]}"
  check_tty "$t exec -it: a terminal for the exec'd process" exec -it "$n-long" tty
  check "$t exec -d, then the process is in the container's cgroup (host)" bash -c '
    "$@" exec -d '"$n-long"' sleep 999 || exit 1
    for _ in $(seq 50); do
      for p in $(cat /sys/fs/cgroup/pids'"$cg"'/cgroup.procs); do
        tr "\0" " " </proc/$p/cmdline 2>/dev/null | grep -q "^sleep 999" && exit 0
      done; sleep 0.1
    done; echo "sleep 999 not in the cgroup"; exit 1' _ "${dk[@]}"
  check "$t top: both processes" bash -c '
    out=$("$@" top '"$n-long"') && grep -q "sleep 1000" <<<"$out" && grep -q "sleep 999" <<<"$out" || { echo "$out"; exit 1; }' \
    _ "${dk[@]}"
  check "$t stats --no-stream: PIDs as the host's cgroup counts them, memory used" bash -c '
    read -r pids mem < <("$@" stats --no-stream --format "{{.PIDs}} {{.MemUsage}}" '"$n-long"')
    want=$(cat /sys/fs/cgroup/pids'"$cg"'/pids.current)
    [ "$pids" = "$want" ] && [ "$pids" -ge 2 ] && [[ $mem =~ ^[0-9.]+[KMG]i?B ]] && [[ ! $mem =~ ^0B ]] ||
      { echo "stats: pids=$pids mem=$mem; pids.current=$want"; exit 1; }' _ "${dk[@]}"
  check_output "$t pause: docker state and the host's freezer" "paused FROZEN" bash -c '
    "$@" pause '"$n-long"' >/dev/null && echo "$("$@" inspect --format "{{.State.Status}}" '"$n-long"') $(cat /sys/fs/cgroup/freezer'"$cg"'/freezer.state)"' \
    _ "${dk[@]}"
  check_output "$t unpause: docker state and the host's freezer" "running THAWED" bash -c '
    "$@" unpause '"$n-long"' >/dev/null && echo "$("$@" inspect --format "{{.State.Status}}" '"$n-long"') $(cat /sys/fs/cgroup/freezer'"$cg"'/freezer.state)"' \
    _ "${dk[@]}"
  check_output "$t docker cp into and out of a running container" "from-host" bash -c '
    echo from-host >'"$work/cp-$rt"' && "$@" cp '"$work/cp-$rt"' '"$n-long"':/tmp/cp && "$@" exec '"$n-long"' test -s /tmp/cp &&
    "$@" cp '"$n-long"':/tmp/cp '"$work/cp-out-$rt"' && cat '"$work/cp-out-$rt"'' _ "${dk[@]}"
  old=$(pid_of "$n-long")
  check "$t restart: a new init, running" bash -c '
    "$@" restart -t 0 '"$n-long"' >/dev/null && new=$("$@" inspect --format "{{.State.Pid}} {{.State.Status}}" '"$n-long"') &&
    [ "${new% *}" != '"$old"' ] && [ "${new#* }" = running ] && [ -d /proc/${new% *} ] || { echo "old '"$old"', new $new"; exit 1; }' \
    _ "${dk[@]}"

  # limits: --memory --cpus --pids-limit, then docker update (host cgroup files and inside)
  check_output "$t run --memory --cpus --pids-limit: the limits inside" "33554432 50000 50" \
    "${run[@]}" --rm --memory 32m --cpus 0.5 --pids-limit 50 "$image" sh -c \
    'echo "$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/pids/pids.max)"'
  check "$t run -d with limits" "${run[@]}" -d --name "$n-lim" --memory 32m --cpus 0.5 --pids-limit 50 "$image" sleep 1000
  cg=$(cgroup_of "$n-lim")
  limits() { echo "$(cat /sys/fs/cgroup/memory"$1"/memory.limit_in_bytes) $(cat /sys/fs/cgroup/cpu"$1"/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/pids"$1"/pids.max)"; }
  check_output "$t the limits in the host's cgroup files" "33554432 50000 50" limits "$cg"
  check "$t docker update --memory 48m --cpus 1 --pids-limit 60" "${dk[@]}" update --memory 48m --cpus 1 --pids-limit 60 "$n-lim"
  check_output "$t update: the host's cgroup files" "50331648 100000 60" limits "$cg"
  check_output "$t update: seen inside" "50331648 60" "${dk[@]}" exec "$n-lim" sh -c \
    'echo "$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) $(cat /sys/fs/cgroup/pids/pids.max)"'
  # A shell whose fork fails gives up; the host's pids.events counts the refusals.
  check_output "$t --pids-limit holds: forks past it refused (host: pids.events, pids.current)" "refused" bash -c '
    "$@" exec '"$n-lim"' sh -c "for i in \$(seq 80); do sleep 5 & done; wait" >/dev/null 2>&1
    max=$(awk "\$1 == \"max\" {print \$2}" /sys/fs/cgroup/pids'"$cg"'/pids.events)
    ((max > 0)) && (($(cat /sys/fs/cgroup/pids'"$cg"'/pids.current) <= 60)) && echo refused' _ "${dk[@]}"
  "${dk[@]}" rm -f "$n-lim" >/dev/null 2>&1 || true

  # stop, kill -s
  check "$t run -d a trapping init" "${run[@]}" -d --name "$n-trap" "$image" sh -c \
    'trap "exit 7" TERM; trap "exit 9" USR1; echo ready; while true; do sleep 0.1; done'
  wait_for 10 bash -c '"$@" logs '"$n-trap"' | grep -q ready' _ "${dk[@]}" || true
  check_output "$t stop: SIGTERM reaches the trap, well before the timeout" "exited 7" bash -c '
    start=$SECONDS; "$@" stop -t 20 '"$n-trap"' >/dev/null || exit 1
    ((SECONDS - start < 10)) || { echo "stop took $((SECONDS - start)) s"; exit 1; }
    "$@" inspect --format "{{.State.Status}} {{.State.ExitCode}}" '"$n-trap"'' _ "${dk[@]}"
  check "$t start again" "${dk[@]}" start "$n-trap"
  wait_for 10 bash -c '"$@" logs '"$n-trap"' | grep -c ready | grep -qx 2' _ "${dk[@]}" || true
  check_output "$t kill -s USR1: the init's trap ran" "exited 9" bash -c '
    "$@" kill -s USR1 '"$n-trap"' >/dev/null && "$@" wait '"$n-trap"' >/dev/null &&
    "$@" inspect --format "{{.State.Status}} {{.State.ExitCode}}" '"$n-trap"'' _ "${dk[@]}"
  # A pid 1 without a handler ignores SIGTERM: docker kills it after the timeout.
  check "$t run -d an init that ignores SIGTERM" "${run[@]}" -d --name "$n-deaf" "$image" sleep 1000
  cg=$(cgroup_of "$n-deaf")
  check_output "$t stop -t 2: SIGKILL after the timeout; the cgroup empties" "exited 137 empty" bash -c '
    start=$SECONDS; "$@" stop -t 2 '"$n-deaf"' >/dev/null || exit 1
    took=$((SECONDS - start)); ((took >= 2 && took < 15)) || { echo "stop took $took s"; exit 1; }
    echo "$("$@" inspect --format "{{.State.Status}} {{.State.ExitCode}}" '"$n-deaf"') $([ -s /sys/fs/cgroup/pids'"$cg"'/cgroup.procs ] && echo busy || echo empty)"' \
    _ "${dk[@]}"
  "${dk[@]}" rm -f "$n-trap" "$n-deaf" >/dev/null 2>&1 || true

  # --restart on-failure:2, --init
  check "$t run -d --restart on-failure:2 (exits 3 each time)" \
    "${run[@]}" -d --name "$n-rs" --restart on-failure:2 "$image" sh -c 'echo run; exit 3'
  check_output "$t on-failure:2: started three times, then stays exited 3" "2 exited 3 3" bash -c '
    for _ in $(seq 150); do
      s=$("$@" inspect --format "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}" '"$n-rs"')
      [ "$s" = "2 exited 3" ] && break; sleep 0.2
    done; echo "$s $("$@" logs '"$n-rs"' | grep -c run)"' _ "${dk[@]}"
  "${dk[@]}" rm -f "$n-rs" >/dev/null 2>&1 || true
  check_output "$t run --init: docker-init is pid 1, the command its child" "docker-init sh" \
    "${run[@]}" --rm --init "$image" sh -c 'echo "$(cut -d " " -f 2 /proc/1/stat | tr -d "()") $(cut -d " " -f 2 /proc/$$/stat | tr -d "()")"'

  # networking: -p (libnetwork-setkey prestart hook), the bridge, none, host
  check "$t run -d -p 127.0.0.1:$port:$port (busybox httpd)" "${run[@]}" -d --name "$n-web" \
    -p "127.0.0.1:$port:$port" "$image" sh -c "mkdir -p /www && echo served-by-$rt >/www/index.html && exec httpd -f -p $port -h /www"
  check_output "$t -p: the host reaches the container's port" "served-by-$rt" bash -c '
    for _ in $(seq 50); do out=$(wget -qO- http://127.0.0.1:'"$port"'/ 2>/dev/null || busybox wget -qO- http://127.0.0.1:'"$port"'/ 2>/dev/null) && break; sleep 0.2; done; echo "$out"'
  check_output "$t bridge: the container has an address on $bridge and a default route via it" \
    "172.29.77 $bridge_ip" "${dk[@]}" exec "$n-web" sh -c \
    'echo "$(ip -o -4 addr show eth0 | awk "{print \$4}" | cut -d. -f1-3) $(ip route | awk "/^default/ {print \$3}")"'
  "${dk[@]}" rm -f "$n-web" >/dev/null 2>&1 || true
  mkdir -p "$work/www-$rt" && echo "host-$rt" >"$work/www-$rt/index.html"
  /usr/bin/python3 -m http.server --bind "$bridge_ip" --directory "$work/www-$rt" $((port + 100)) >/dev/null 2>&1 &
  local web=$!
  check_output "$t bridge: the container reaches a server on the host's bridge address" "host-$rt" \
    "${run[@]}" --rm "$image" sh -c "for i in \$(seq 50); do out=\$(wget -qO- http://$bridge_ip:$((port + 100))/ 2>/dev/null) && break; sleep 0.2; done; echo \"\$out\""
  kill "$web" 2>/dev/null || true
  wait "$web" 2>/dev/null || true
  check_output "$t --network none: only lo, up" "lo <LOOPBACK,UP,LOWER_UP>" "${run[@]}" --rm --network none "$image" \
    sh -c 'echo "$(ip -o link show | awk -F": " "{print \$2}" | xargs) $(ip -o link show lo | grep -o "<[^>]*>")"'
  check_output "$t --network host: the host's interfaces" "$(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort | xargs)" \
    "${run[@]}" --rm --network host "$image" sh -c "ip -o link show | awk -F': ' '{print \$2}' | sed 's/@.*//' | sort | xargs"

  # devices, filesystems, users, capabilities, seccomp, privileges, sysctls, rlimits
  check_output "$t --device HOST:CONTAINER: a usable node under the new name" "c 1 3 ok" \
    "${run[@]}" --rm --device /dev/null:/dev/mynull "$image" \
    sh -c 'echo "$(stat -c "%F %t %T" /dev/mynull | sed "s/character special file/c/") $(echo x >/dev/mynull && echo ok)"'
  check_output "$t --read-only --tmpfs /scratch: read-only root, a writable tmpfs" "ro tmpfs rw" \
    "${run[@]}" --rm --read-only --tmpfs /scratch "$image" \
    sh -c 'touch /x 2>/dev/null && r=rw || r=ro; echo "$r $(awk "\$2 == \"/scratch\" {print \$3}" /proc/mounts) $(touch /scratch/x && echo rw)"'
  rm -f "$work/vol/from-$rt"
  check_output "$t -v HOST:CONTAINER: a file written inside is on the host" "inside-$rt" bash -c '
    "$@" --rm -v '"$work/vol"':/data '"$image"' sh -c "echo inside-'"$rt"' >/data/from-'"$rt"'" && cat '"$work/vol/from-$rt"'' \
    _ "${run[@]}"
  check_output "$t --user 1000:1000" "1000 1000" "${run[@]}" --rm --user 1000:1000 "$image" sh -c 'echo "$(id -u) $(id -g)"'
  check_output "$t --cap-drop all --cap-add NET_RAW: only that capability" "0000000000002000" \
    "${run[@]}" --rm --cap-drop all --cap-add NET_RAW "$image" awk '$1 == "CapEff:" {print $2}' /proc/self/status
  check_output "$t docker's default seccomp profile is loaded" "Seccomp:2" \
    "${run[@]}" --rm "$image" sh -c 'grep Seccomp: /proc/self/status | tr -d "\t"'
  check_output "$t --security-opt seccomp=PROFILE: mkdir refused, the rest allowed" "refused ok" \
    "${run[@]}" --rm --security-opt "seccomp=$work/seccomp.json" "$image" \
    sh -c 'echo "$(mkdir /tmp/d 2>/dev/null && echo made || echo refused) $(touch /tmp/f && echo ok)"'
  check_output "$t --security-opt seccomp=unconfined" "Seccomp:0" \
    "${run[@]}" --rm --security-opt seccomp=unconfined "$image" sh -c 'grep Seccomp: /proc/self/status | tr -d "\t"'
  # Docker's --privileged asks for every capability: where this host's bounding set lacks one
  # (no CAP_SYS_RESOURCE on this machine) no runtime can give them, and each must say so.
  if [ "$host_caps_full" = yes ]; then
    check_output "$t --privileged: every capability, host devices, no seccomp, rw /sys" \
      "$(awk '$1 == "CapBnd:" {print $2}' /proc/self/status) yes Seccomp:0 rw" \
      "${run[@]}" --rm --privileged "$image" sh -c \
      'echo "$(awk "\$1 == \"CapEff:\" {print \$2}" /proc/self/status) $([ -e /dev/zero ] && [ -e /dev/'"$(ls /dev | grep -m1 -E '^(loop0|tty1|mem)$')"' ] && echo yes) $(grep Seccomp: /proc/self/status | tr -d "\t") $(awk "\$2 == \"/sys\" {split(\$4, o, \",\"); print o[1]}" /proc/mounts)"'
  else
    local why='unable to apply caps: operation not permitted'
    [ "$rt" = cdirun ] && why="unable to apply caps: cdirun itself does not hold $host_caps_missing"
    check_fails_with "$t --privileged on a host without $host_caps_missing: refused, naming why" \
      "$why" "${run[@]}" --rm --privileged "$image" true
  fi
  check_output "$t --sysctl net.core.somaxconn=1234: set inside, not on the host" "1234 $(cat /proc/sys/net/core/somaxconn)" \
    bash -c 'echo "$("$@" --rm --sysctl net.core.somaxconn=1234 '"$image"' cat /proc/sys/net/core/somaxconn) $(cat /proc/sys/net/core/somaxconn)"' \
    _ "${run[@]}"
  check_output "$t --ulimit nofile=1024:2048" "1024 2048" \
    "${run[@]}" --rm --ulimit nofile=1024:2048 "$image" sh -c 'echo "$(ulimit -n) $(ulimit -Hn)"'

  # healthcheck (docker execs the probe through the runtime)
  check "$t run -d with a healthcheck" "${run[@]}" -d --name "$n-hc" --health-cmd 'test -e /tmp/healthy' \
    --health-interval 1s --health-retries 1 "$image" sh -c 'touch /tmp/healthy; exec sleep 1000'
  check_output "$t healthcheck: healthy" "healthy" bash -c '
    for _ in $(seq 100); do h=$("$@" inspect --format "{{.State.Health.Status}}" '"$n-hc"'); [ "$h" = healthy ] && break; sleep 0.2; done; echo "$h"' \
    _ "${dk[@]}"
  check_output "$t healthcheck: unhealthy once the probe fails" "unhealthy" bash -c '
    "$@" exec '"$n-hc"' rm /tmp/healthy || exit 1
    for _ in $(seq 100); do h=$("$@" inspect --format "{{.State.Health.Status}}" '"$n-hc"'); [ "$h" = unhealthy ] && break; sleep 0.2; done; echo "$h"' \
    _ "${dk[@]}"
  "${dk[@]}" rm -f "$n-hc" >/dev/null 2>&1 || true

  # docker events: the life of one container
  local since
  since=$(date +%s)
  "${run[@]}" --rm --name "$n-ev" "$image" true >/dev/null 2>&1 || true
  check_output "$t docker events: create start die destroy" "create start die destroy" bash -c '
    "$@" events --since '"$since"' --until "$(($(date +%s) + 1))" --filter container='"$n-ev"' --format "{{.Action}}" |
      grep -xE "create|start|die|destroy" | xargs' _ "${dk[@]}"

  # rm: the runtime's state and the container's cgroup are gone
  local id
  id=$("${dk[@]}" inspect --format '{{.Id}}' "$n-long")
  # Docker gives every runtime the same state root (<exec-root>/runtime-runc/moby).
  check "$t rm -f a running container: no runtime state, no cgroup left (host)" bash -c '
    [ -e '"$work/exec/runtime-runc/moby/$id"'/state.json ] || { echo "no state to begin with"; exit 1; }
    "$@" rm -f '"$n-long"' >/dev/null || exit 1
    [ ! -e '"$work/exec/runtime-runc/moby/$id"' ] || { echo "state left"; exit 1; }
    left=$(find /sys/fs/cgroup -maxdepth 5 -name '"$id"'); [ -z "$left" ] || { echo "cgroups left: $left"; exit 1; }' \
    _ "${dk[@]}"
}

cat >"$work/seccomp.json" <<'JSON'
{"defaultAction": "SCMP_ACT_ALLOW",
 "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
JSON
# Capabilities this kernel knows that this host's bounding set lacks (names as config.json has).
cap_names=(CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
  LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE
  SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME
  SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG
  WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE)
host_bnd=$((16#$(awk '$1 == "CapBnd:" {print $2}' /proc/self/status)))
host_caps_missing=
for ((bit = 0; bit <= $(cat /proc/sys/kernel/cap_last_cap) && bit < ${#cap_names[@]}; bit++)); do
  ((host_bnd >> bit & 1)) || host_caps_missing+="${host_caps_missing:+, }CAP_${cap_names[bit]}"
done
host_caps_full=yes
[ -z "$host_caps_missing" ] || host_caps_full=no
for rt in runc cdirun; do
  echo "--- matrix: $rt"
  matrix "$rt"
done

# --- live restore: dockerd restarts, its containers keep running ---------------------------------
echo "--- dockerd restart with --live-restore"
for rt in runc cdirun; do
  check "[$rt] run -d before the dockerd restart" "${dk[@]}" run --runtime "$rt" -d --name "dk-$rt-live" "$image" sleep 1000
done
declare -A live_pid=()
for rt in runc cdirun; do live_pid[$rt]=$(pid_of "dk-$rt-live"); done
stop_dockerd
check_output "live-restore: both containers outlive dockerd (host)" "alive alive" bash -c '
  echo "$(kill -0 '"${live_pid[runc]}"' && echo alive) $(kill -0 '"${live_pid[cdirun]}"' && echo alive)"'
if start_dockerd; then ok "dockerd starts again"; else fail "dockerd starts again" "$(tail -n 30 "$work/dockerd.log")"; fi
for rt in runc cdirun; do
  check_output "[$rt] after the restart: the same init, running; exec works" "${live_pid[$rt]} running in" bash -c '
    echo "$("$@" inspect --format "{{.State.Pid}} {{.State.Status}}" dk-'"$rt"'-live) $("$@" exec dk-'"$rt"'-live echo in)"' _ "${dk[@]}"
  check_output "[$rt] after the restart: stop works" "exited 137" bash -c '
    "$@" stop -t 1 dk-'"$rt"'-live >/dev/null && "$@" inspect --format "{{.State.Status}} {{.State.ExitCode}}" dk-'"$rt"'-live' _ "${dk[@]}"
  "${dk[@]}" rm -f "dk-$rt-live" >/dev/null 2>&1 || true
done

# --- GPUs: NVIDIA_VISIBLE_DEVICES and --gpus mapped to CDI ----------------------------------------
echo "--- GPUs"
gpu=("${dk[@]}" run --runtime cdirun --rm)
# shellcheck disable=SC2016
gpu_probe='echo "$(ls /dev | grep -E "^nvidia" | xargs) | $NVIDIA_VISIBLE_DEVICES | $(echo x 2>&1 >/dev/nvidia0 | grep -o "No such device or address")"'
check_output "NVIDIA_VISIBLE_DEVICES=0: GPU 0 and the control node, usable" "nvidia0 nvidiactl | 0 | No such device or address" \
  "${gpu[@]}" -e NVIDIA_VISIBLE_DEVICES=0 "$image" sh -c "$gpu_probe"
check_output "NVIDIA_VISIBLE_DEVICES=all: every GPU" "nvidia0 nvidia1 nvidiactl" \
  "${gpu[@]}" -e NVIDIA_VISIBLE_DEVICES=all "$image" sh -c 'ls /dev | grep -E "^nvidia" | xargs'
check_output "NVIDIA_VISIBLE_DEVICES=none: no GPU node" "" \
  "${gpu[@]}" -e NVIDIA_VISIBLE_DEVICES=none "$image" sh -c 'ls /dev | grep -E "^nvidia" | xargs'
# Docker adds nvidia-container-runtime-hook (the stand-in, which fails whenever it runs) as a
# prestart hook: a container that starts at all had it dropped.
check_output "--gpus all: every GPU through CDI, Docker's NVIDIA hook dropped" "nvidia0 nvidia1 nvidiactl" \
  "${gpu[@]}" --gpus all "$image" sh -c 'ls /dev | grep -E "^nvidia" | xargs'
check_output "--gpus 1: one GPU (docker asks for device 0)" "nvidia0 nvidiactl" \
  "${gpu[@]}" --gpus 1 "$image" sh -c 'ls /dev | grep -E "^nvidia" | xargs'
check_output "--gpus device=1" "nvidia1 nvidiactl" \
  "${gpu[@]}" --gpus device=1 "$image" sh -c 'ls /dev | grep -E "^nvidia" | xargs'
check_fails_with "[runc] --gpus all: the stand-in hook says to use cdirun" \
  "served by cdirun through CDI.*--runtime cdirun" "${dk[@]}" run --rm --runtime runc --gpus all "$image" true
check_fails_with "an unknown GPU: cdirun's message in docker's error" \
  "unresolvable CDI devices nvidia\.com/gpu=7" "${gpu[@]}" -e NVIDIA_VISIBLE_DEVICES=7 "$image" true

ledger=$work/cdirun-state/gpu-ledger.json
holders() { jq -r '[.devices | to_entries[] | select(.value | length > 0) | "\(.key)=\(.value | map(.holder.id[0:12]) | join("+"))"] | join(" ")' "$ledger" 2>/dev/null; }
check "run -d two containers holding GPU 0 and GPU 1" bash -c '
  "$@" run --runtime cdirun -d --name dk-gpu0 -e NVIDIA_VISIBLE_DEVICES=0 '"$image"' sleep 1000 >/dev/null &&
  "$@" run --runtime cdirun -d --name dk-gpu1 --gpus device=1 '"$image"' sleep 1000 >/dev/null' _ "${dk[@]}"
g0=$("${dk[@]}" inspect --format '{{.Id}}' dk-gpu0 2>/dev/null | cut -c1-12)
g1=$("${dk[@]}" inspect --format '{{.Id}}' dk-gpu1 2>/dev/null | cut -c1-12)
check_output "the ledger names each container's GPU" "nvidia.com/gpu=0=$g0 nvidia.com/gpu=1=$g1" holders
check_output "docker rm gives back every GPU: the ledger is empty" "" bash -c '
  "$@" rm -f dk-gpu0 dk-gpu1 >/dev/null; jq -r "[.devices | to_entries[] | select(.value | length > 0) | .key] | join(\" \")" '"$ledger"'' \
  _ "${dk[@]}"

# --- install on the other clients: their own parsers read what cdirun wrote --------------------
echo "--- cdirun install containerd|podman"
printf '# site\nversion = 2\nroot = "%s/c2-root"\n' "$work" >"$work/c2.toml"
check_output "install containerd --systemd-cgroup: containerd's config dump shows the handler" \
  "BinaryName = \"$cdirun\" SystemdCgroup = true runtime_type = \"io.containerd.runc.v2\"" bash -c '
  "$1" install containerd --config "$2" --systemd-cgroup >/dev/null && head -n1 "$2" | grep -qx "# site" &&
  containerd --config "$2" config dump | awk "/^ *\\[/ { on = /runtimes\\.cdirun[].]/ } on" |
    grep -oE "BinaryName = \"[^\"]*\"|SystemdCgroup = [a-z]*|runtime_type = \"[^\"]*\"" | sort | xargs -d "\n"' \
  _ "$cdirun" "$work/c2.toml"
mkdir -p "$work/podman"
printf '# site\n[engine]\nruntime = "dk-cdirun"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n' \
  >"$work/podman/containers.conf"
# podman info names the OCI runtime it would use: the one `[engine] runtime` selects, found
# through the [engine.runtimes] entry cdirun wrote.
check_output "install podman: podman's runtime by that name is cdirun's path" "dk-cdirun $cdirun" bash -c '
  "$1" install podman --config "$2" --name dk-cdirun >/dev/null && head -n1 "$2" | grep -qx "# site" &&
  CONTAINERS_CONF="$2" podman --root "$3/root" --runroot "$3/runroot" --storage-driver vfs \
    info --format "{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Path}}"' \
  _ "$cdirun" "$work/podman/containers.conf" "$work/podman"

# --- hygiene -----------------------------------------------------------------------------------------
check_output "no container left" "" "${dk[@]}" ps --all --quiet
stop_dockerd
kill "$containerd_pid" 2>/dev/null || true
wait "$containerd_pid" 2>/dev/null || true
containerd_pid=
check_output "dockerd, containerd and the shims stopped" "" bash -c '
  for p in $(pgrep -x dockerd) $(pgrep -x containerd) $(pgrep -x containerd-shim); do
    tr "\0" " " </proc/$p/cmdline 2>/dev/null | grep -qF '"$work"' && echo "$p"; done; true'
# dockerd leaves its own two mounts (the data root's private bind mount and libnetwork's
# default netns), which cleanup removes; a container's mount left behind is a failure.
check_output "no container mounts left under the temp dir" "" bash -c '
  awk -v dir="$1" '\''index($5, dir) == 1 {print $5}'\'' /proc/self/mountinfo | grep -vx -e "$1/data" -e "$1/exec/netns/default" || true' \
  _ "$work"

summary
