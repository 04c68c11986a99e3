#!/usr/bin/env bash
# podman (through conmon) driving cdirun end to end, the way a user runs it: once with
# `--runtime /path/to/cdirun` and once through a containers.conf [engine.runtimes] entry.
# Every piece of podman's state lives under one temp dir; the suite removes all it made.
#
#   CDIRUN_BIN=target/release/cdirun conformance/clients/podman.sh
#
# Prints one ok/FAIL line per check and "N passed, N failed" last; exits non-zero on a failure.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
. "$repo/conformance/clients/lib.sh"
require_root
"$repo/scripts/install-deps.sh" test

cdirun=$(cdirun_under_test)

work=$(mktemp -d /tmp/cdirun-podman.XXXXXX)
remember_host
remember_cgroups libpod_parent
podman_cmd=()
cleanup() {
  set +e
  ((${#podman_cmd[@]})) && podman_wipe "$work" "${podman_cmd[@]}"
  forget_cgroups
  forget_host
  rm -rf "$work"
}
trap cleanup EXIT

# cdirun's own config: CDI specs and node-wide state under the temp dir. podman runs the runtime
# with a scrubbed environment; conmon_env_vars is how CDIRUN_CONFIG reaches it.
write_cdi_spec "$work/cdi" "$work/accel0"
cat >"$work/cdirun.toml" <<TOML
state-dir = "$work/state"
[cdi]
spec-dirs = ["$work/cdi"]
TOML
# The [engine.runtimes] entry is the packaged example's, pointed at the binary under test.
read -ra podman_cmd < <(
  {
    echo "conmon_env_vars = [\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\", \"CDIRUN_CONFIG=$work/cdirun.toml\"]"
    sed -n '/^\[engine\.runtimes\]/,$p' "$repo/packaging/examples/containers.conf.d-cdirun.conf" |
      sed "s|\"/usr/bin/cdirun\"|\"$cdirun\"|"
  } | podman_store "$work/podman"
)
# A hung client must fail the suite, not stall it.
podman_cmd=(timeout 120 "${podman_cmd[@]}")
by_path=("${podman_cmd[@]}" --runtime "$cdirun")
by_name=("${podman_cmd[@]}" --runtime cdirun)
image=localhost/busybox:cdirun
import_busybox "${podman_cmd[@]}" -- "$image" "$work"
# A pod's infra container runs its image's command: one that stays.
pause_image=localhost/pause:cdirun
import_busybox "${podman_cmd[@]}" -- "$pause_image" "$work" '["/bin/sleep", "2147483647"]'

# cgroup_of PODMAN... CONTAINER: the container's cgroup path, read from its init's /proc entry in
# the pids hierarchy (how podman and containerd find it too).
cgroup_of() {
  local pid name=${*: -1}
  pid=$("${@:1:$#-1}" inspect --format '{{.State.Pid}}' "$name")
  awk -F: '$2 == "pids" {print $3}' "/proc/$pid/cgroup"
}

# --- run, by path and by name ------------------------------------------------------------------
# The container sees its cgroup nested under workload.slice: only cdirun puts it there, so this
# also proves podman used cdirun and not its default runtime.
nested='^/workload\.slice/libpod_parent/libpod-[0-9a-f]{64}$'
check "run --runtime PATH: output and nested cgroup" \
  bash -c '"$@" run --rm '"$image"' sh -c "echo hello; awk -F: '\''\$2 == \"pids\" {print \$3}'\'' /proc/self/cgroup" |
    { read -r line; [ "$line" = hello ] && read -r cg && [[ $cg =~ '"$nested"' ]]; }' _ "${by_path[@]}"
check "run with an [engine.runtimes] entry: output and nested cgroup" \
  bash -c '"$@" run --rm '"$image"' sh -c "echo hello; awk -F: '\''\$2 == \"pids\" {print \$3}'\'' /proc/self/cgroup" |
    { read -r line; [ "$line" = hello ] && read -r cg && [[ $cg =~ '"$nested"' ]]; }' _ "${by_name[@]}"
check_output "run: exit status of the container" "3" \
  bash -c '"$@" run --rm '"$image"' sh -c "exit 3"; echo $?' _ "${by_name[@]}"
check_output "run --memory --pids-limit: limits set at create" "33554432 50" \
  "${by_name[@]}" run --rm --memory 32m --pids-limit 50 "$image" \
  sh -c 'echo "$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) $(cat /sys/fs/cgroup/pids/pids.max)"'
# Both carry runc's tmpcopyup mount option: the tmpfs starts with the image's files there.
check_output "run --read-only: read-only root, writable tmpfs /tmp" "ro rw" \
  "${by_name[@]}" run --rm --read-only "$image" \
  sh -c 'touch /x 2>/dev/null && r=rw || r=ro; touch /tmp/x && t=rw || t=ro; echo "$r $t"'
check_output "run --tmpfs: a writable tmpfs" "tmpfs rw" \
  "${by_name[@]}" run --rm --tmpfs /scratch "$image" \
  sh -c 'echo "$(awk "\$2 == \"/scratch\" {print \$3}" /proc/mounts) $(touch /scratch/x && echo rw)"'
check_output "run -t: the container gets a terminal (console socket)" "/dev/pts/0" \
  "${by_path[@]}" run --rm -t "$image" tty
check_output "run --tmpfs (tmpcopyup): the image's files and the directory's mode, read-only" \
  "root:x:0:0:root:/root:/bin/sh 755 ro" \
  "${by_name[@]}" run --rm --tmpfs /etc:ro "$image" \
  sh -c 'echo "$(cat /etc/passwd) $(stat -c %a /etc) $(touch /etc/x 2>/dev/null && echo rw || echo ro)"'
# runc brings up lo in a network namespace it creates.
check_output "run --network none: loopback up" "<LOOPBACK,UP,LOWER_UP>" \
  "${by_name[@]}" run --rm --network none "$image" sh -c "ip -o link show lo | grep -o '<[^>]*>'"
check_output "run --user 1000:1000" "1000 1000" "${by_name[@]}" run --rm --user 1000:1000 "$image" \
  sh -c 'echo "$(id -u) $(id -g)"'
check_output "run --cap-drop all --cap-add NET_RAW: only that capability" "0000000000002000" \
  "${by_name[@]}" run --rm --cap-drop all --cap-add NET_RAW "$image" \
  awk '$1 == "CapEff:" {print $2}' /proc/self/status
check_output "run --device HOST:CONTAINER: a usable node under the new name" "c 1 3 ok" \
  "${by_name[@]}" run --rm --device /dev/null:/dev/mynull "$image" \
  sh -c 'echo "$(stat -c "%F %t %T" /dev/mynull | sed "s/character special file/c/") $(echo x >/dev/mynull && echo ok)"'
check_output "run -i: piped stdin reaches the container" "piped" \
  bash -c 'echo piped | "$@" run --rm -i '"$image"' cat' _ "${by_name[@]}"
check_output "run --init: podman's init is pid 1, the command its child" "podman-init sh" \
  "${by_name[@]}" run --rm --init "$image" sh -c 'echo "$(cut -d " " -f 2 /proc/1/stat | tr -d "()") $(cut -d " " -f 2 /proc/$$/stat | tr -d "()")"'

# --- a long-running container: exec, top, pause/unpause, update, stats -------------------------
check "run -d" "${by_name[@]}" run -d --name long -e FOO=bar -w /tmp "$image" sleep 1000
check_output "inspect: running" "running" "${by_name[@]}" inspect --format '{{.State.Status}}' long
check_output "exec: output and exit status" "in-exec
4" bash -c '"$@" exec long sh -c "echo in-exec; exit 4"; echo $?' _ "${by_name[@]}"
# podman reads runc's words in the runtime's error to give a shell's statuses: 127 for a command
# that does not exist, 126 for one that cannot be executed.
check_output "exec of a missing command: status 127" "127" \
  bash -c '"$@" exec long /nonexistent 2>/dev/null; echo $?' _ "${by_name[@]}"
check_output "exec of a command not in PATH: status 127" "127" \
  bash -c '"$@" exec long no-such-command 2>/dev/null; echo $?' _ "${by_name[@]}"
check_output "exec of a non-executable file: status 126" "126" \
  bash -c '"$@" exec long /etc/passwd 2>/dev/null; echo $?' _ "${by_name[@]}"
check_output "exec: the container's env and working dir, plus exec -e" "bar /tmp 1" \
  "${by_name[@]}" exec -e X=1 long sh -c 'echo "$FOO $(pwd) $X"'
check_output "exec --user 1000:1000 -w /bin" "1000 1000 /bin" \
  "${by_name[@]}" exec --user 1000:1000 -w /bin long sh -c 'echo "$(id -u) $(id -g) $(pwd)"'
# podman's default seccomp profile: the exec'd process runs under it as the init does, and the
# cgroup hierarchies it sees are read-only, so it cannot raise its own limits.
check_output "exec: the container's seccomp filter; read-only cgroup mounts" "Seccomp:2 refused" \
  "${by_name[@]}" exec long sh -c \
  'echo "$(grep Seccomp: /proc/self/status | tr -d "\t") $(echo max 2>/dev/null >/sys/fs/cgroup/pids/pids.max && echo raised || echo refused)"'
check_output "cp into and out of a running container" "from-host" bash -c '
  echo from-host >'"$work"'/cp-in && "$@" cp '"$work"'/cp-in long:/tmp/cp && "$@" cp long:/tmp/cp '"$work"'/cp-out &&
  cat '"$work"'/cp-out' _ "${by_name[@]}"
check_output "exec -t: a terminal for the exec'd process" "/dev/pts/0" \
  "${by_name[@]}" exec -t long tty
check_output "exec -i: stdin reaches the process" "from-stdin" \
  bash -c 'echo from-stdin | "$@" exec -i long cat' _ "${by_name[@]}"
check "exec -d: detached process starts" "${by_name[@]}" exec -d long sleep 999
check "top: both processes listed" \
  bash -c '"$@" top long args | grep -q "sleep 1000" && "$@" top long args | grep -q "sleep 999"' _ "${by_name[@]}"
cg=$(cgroup_of "${by_name[@]}" long)
check "exec'd process joins the container's cgroup" \
  bash -c 'cat /sys/fs/cgroup/pids'"$cg"'/cgroup.procs | xargs -n1 -I{} cat /proc/{}/cmdline | tr "\0" " " | grep -q "sleep 999"'

check "pause" "${by_name[@]}" pause long
check_output "paused: podman state and the freezer cgroup" "paused FROZEN" \
  bash -c 'echo "$("$@" inspect --format "{{.State.Status}}" long) $(cat /sys/fs/cgroup/freezer'"$cg"'/freezer.state)"' \
  _ "${by_name[@]}"
check "unpause" "${by_name[@]}" unpause long
check_output "unpaused: podman state and the freezer cgroup" "running THAWED" \
  bash -c 'echo "$("$@" inspect --format "{{.State.Status}}" long) $(cat /sys/fs/cgroup/freezer'"$cg"'/freezer.state)"' \
  _ "${by_name[@]}"

check "update --memory 64m --cpu-shares 512" "${by_name[@]}" update --memory 64m --cpu-shares 512 long
check_output "update: limits in the container's cgroup" "67108864 512" \
  bash -c 'echo "$(cat /sys/fs/cgroup/memory'"$cg"'/memory.limit_in_bytes) $(cat /sys/fs/cgroup/cpu'"$cg"'/cpu.shares)"'

# podman reads metrics from the cgroup it finds through /proc/PID/cgroup: with the nested path it
# must see the container's processes (the limit it shows comes from its own record, not the cgroup).
check "stats: PIDs and memory come from the nested cgroup" bash -c '
  read -r pids mem < <("$@" stats --no-stream --no-reset --format "{{.PIDs}} {{.MemUsageBytes}}" long)
  want=$(wc -l <'"/sys/fs/cgroup/pids$cg/cgroup.procs"')
  [ "$pids" = "$want" ] && [ "$pids" -ge 2 ] && [[ $mem =~ ^[1-9] ]] ||
    { echo "stats: pids=$pids mem=$mem (cgroup has $want processes)"; exit 1; }' _ "${by_name[@]}"

check "restart: a new init" bash -c '
  old=$("$@" inspect --format "{{.State.Pid}}" long) && "$@" restart --time 0 long >/dev/null &&
  new=$("$@" inspect --format "{{.State.Pid}} {{.State.Status}}" long) &&
  [ "$new" != "$old running" ] && [ "${new#* }" = running ] || { echo "before: $old; after: $new"; exit 1; }' \
  _ "${by_name[@]}"
cg=$(cgroup_of "${by_name[@]}" long)

# --- logs and wait ---------------------------------------------------------------------------
check "run -d a container that writes and exits 5" \
  "${by_name[@]}" run -d --name logger "$image" sh -c 'echo out; echo err >&2; exit 5'
check_output "wait: the exit status" "5" "${by_name[@]}" wait logger
check_output "logs: stdout and stderr" "err out" \
  bash -c '"$@" logs logger 2>&1 | sort | xargs' _ "${by_name[@]}"
check "rm the exited container" "${by_name[@]}" rm logger

# --- a pod: containers join the infra container's namespaces by path ---------------------------
check "pod create (pid and network namespaces shared, no network)" \
  "${by_name[@]}" pod create --name pod1 --share pid,net --network none --infra-image "$pause_image"
check "run -d in the pod" "${by_name[@]}" run -d --pod pod1 --name member "$image" sleep 1001
check_output "run in the pod: the infra's pid namespace and its network namespace (lo up)" \
  "sleep 1 <LOOPBACK,UP,LOWER_UP>" "${by_name[@]}" run --rm --pod pod1 "$image" \
  sh -c 'echo "$(cut -d " " -f 2 /proc/1/stat | tr -d "()") $(ps -o args | grep -cx "sleep 1001") $(ip -o link show lo | grep -o "<[^>]*>")"'
check "pod rm" "${by_name[@]}" pod rm --force --time 0 pod1

# --- stop and kill -----------------------------------------------------------------------------
check "stop: SIGTERM reaches a trapping init" \
  "${by_name[@]}" run -d --name trapper "$image" sh -c 'trap "exit 7" TERM; while true; do sleep 0.1; done'
wait_for 10 bash -c '"$@" top trapper args | grep -q "while true"' _ "${by_name[@]}" || true
check_output "stop: the trap's exit status, well before the timeout" "exited 7" bash -c '
  start=$SECONDS; "$@" stop --time 20 trapper >/dev/null || exit 1
  ((SECONDS - start < 10)) || { echo "stop took $((SECONDS - start)) s"; exit 1; }
  "$@" inspect --format "{{.State.Status}} {{.State.ExitCode}}" trapper' _ "${by_name[@]}"
check "start again after stop" "${by_name[@]}" start trapper
check "kill -s KILL" "${by_name[@]}" kill --signal KILL trapper
check_output "killed: exit status 137" "exited 137" \
  bash -c '"$@" wait trapper >/dev/null; "$@" inspect --format "{{.State.Status}} {{.State.ExitCode}}" trapper' \
  _ "${by_name[@]}"

# With the host's pid namespace, podman stops a container with `kill --all`: every process of the
# container must go, not only its init.
check "run -d --pid host with background children" \
  "${by_path[@]}" run -d --pid host --name hostpid "$image" sh -c 'sleep 1001 & sleep 1002 & wait'
hp_cg=$(cgroup_of "${by_path[@]}" hostpid)
check_output "stop (kill --all): init and children all gone" "exited 143" bash -c '
  "$@" stop --time 5 hostpid >/dev/null || exit 1
  left=$(cat /sys/fs/cgroup/pids'"$hp_cg"'/cgroup.procs 2>/dev/null || true)
  [ -z "$left" ] || { echo "left in the cgroup: $left"; exit 1; }
  pgrep -f "sleep 100[12]" && { echo "children survived"; exit 1; }
  "$@" inspect --format "{{.State.Status}} {{.State.ExitCode}}" hostpid' \
  _ "${by_path[@]}"

# --- remove: cdirun's state and the container's cgroup go with it ------------------------------
long_id=$("${by_name[@]}" inspect --format '{{.Id}}' long)
check "rm --force a running container" "${by_name[@]}" rm --force --time 0 long
check "rm: no cdirun state, no cgroup left" bash -c '
  [ ! -e /run/cdirun/'"$long_id"' ] || { echo "state left"; exit 1; }
  left=$(find /sys/fs/cgroup -maxdepth 4 -name "libpod-'"$long_id"'*")
  [ -z "$left" ] || { echo "cgroups left: $left"; exit 1; }'
check "rm stopped containers" "${by_name[@]}" rm trapper hostpid

# --- CDI: a device by annotation, and a device that cannot be resolved -------------------------
check_output "CDI annotation: the container gets the device node and the spec's env" \
  "$device_probe_want" \
  "${by_name[@]}" run --rm --annotation cdi.k8s.io/test=test.cdirun.dev/accel=accel0 "$image" \
  sh -c "$device_probe"
check_output "CDI annotation with --runtime PATH too" "$device_probe_want" \
  "${by_path[@]}" run --rm --annotation cdi.k8s.io/test=test.cdirun.dev/accel=accel0 "$image" \
  sh -c "$device_probe"
check_fails_with "failing create: cdirun's message in podman's error output" \
  'OCI runtime error: cdirun: cannot prepare container .*unresolvable CDI devices test\.cdirun\.dev/accel=nosuch \(annotation cdi\.k8s\.io/test\)' \
  "${by_name[@]}" run --rm --annotation cdi.k8s.io/test=test.cdirun.dev/accel=nosuch "$image" true
check_output "failing create leaves no container behind" "" "${by_name[@]}" ps --all --quiet

# --- hygiene -----------------------------------------------------------------------------------
# The exit commands of conmon (podman container cleanup) mount the store: wait for them first.
check_output "no conmon or podman process left" "" clients_gone "$work"
# The store's own private bind mount (root/overlay) stays when the last podman process to exit
# saw another one's layer still mounted (a race among podman's own cleanup processes, seen after
# the pod's containers); podman_wipe removes it. Any container's mount left is a failure.
check_output "no container mounts left under the temp dir" "" bash -c 'mounts_under() {
  awk -v dir="$1" '\''index($5, dir) == 1 {print $5}'\'' /proc/self/mountinfo; }
  mounts_under '"$work"' | grep -vx '"$work/podman/root/overlay"' || true'

summary
