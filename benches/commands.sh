#!/usr/bin/env bash
# Whole-command timings of cdirun against runc and crun in one hyperfine run per operation:
#   run /bin/true, create+start+wait+delete, state, list, exec.
# crun 1.8 refuses this host's hybrid cgroup layout, so every runtime runs inside one private
# mount namespace with the cgroup2 mount at /sys/fs/cgroup/unified detached (the same layout
# for all three, so the comparison is fair). Results: Markdown tables in $OUT (default
# target/bench), and a ratio summary on stdout.
#   benches/commands.sh [RUNS]     (default 100 runs per command)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root

if [ "${1:-}" != --inside ]; then
  scripts/install-deps.sh test
  cargo build --release --locked --quiet
  # Re-enter in a private mount namespace; the host keeps its cgroup2 mount.
  exec unshare --mount --propagation private "$0" --inside "${1:-100}"
fi
runs=$2
# Hidden under a throwaway tmpfs: what the runtimes write there must not land on the host's
# /sys/fs/cgroup tmpfs, which a bare unmount would expose.
umount /sys/fs/cgroup/unified 2>/dev/null || true
mount -t tmpfs -o size=1m hidden /sys/fs/cgroup/unified

cdirun=$PWD/target/release/cdirun
out=${OUT:-$PWD/target/bench}
mkdir -p "$out"
work=$(mktemp -d /tmp/cdirun-bench.XXXXXX)
runtimes=(cdirun runc crun)
declare -A bin=([cdirun]=$cdirun [runc]=$(command -v runc) [crun]=$(command -v crun))
# Other cdirun builds to time in the same runs, one lever each:
#   CDIRUN_VARIANTS="nopie=/tmp/cdirun-nopie ro=/mnt/ro/cdirun" benches/commands.sh
variants=()
for variant in ${CDIRUN_VARIANTS:-}; do
  variants+=("${variant%%=*}")
  bin[${variant%%=*}]=${variant#*=}
done
runtimes+=("${variants[@]}")

# Every container id this script uses starts with "b-".
cleanup() {
  trap - EXIT INT TERM HUP
  for rt in "${runtimes[@]}"; do
    # Every entry of the root, not only what `list` shows: an interrupted create may have left
    # a state dir without a state file, which delete --force also removes.
    for dir in "$work/root-$rt"/b-*; do
      [ -e "$dir" ] || continue
      "${bin[$rt]}" --root "$work/root-$rt" delete --force "$(basename "$dir")" >/dev/null 2>&1 || true
    done
  done
  # Cgroups of a container whose create was cut short, in every mounted hierarchy.
  local mnt left
  for mnt in $(findmnt -n -l -t cgroup,cgroup2 -o TARGET); do
    left=$(find "$mnt" -xdev -mindepth 1 -depth -type d \( -name b-run -o -name b-life -o -name 'b-long*' -o -name b-rss \) 2>/dev/null || true)
    [ -n "$left" ] || continue
    echo "removing cgroups left by an interrupted run: $left" >&2
    echo "$left" | xargs -r rmdir || true
  done
  rm -rf "$work"
}
# An interrupt (hyperfine forwards Ctrl-C) or a kill ends the script through the EXIT trap.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# One bundle per runtime (crun and runc write nothing into it, cdirun rewrites config.json), each
# from one client config; the long-running containers below start from that config too, not
# from a config.json cdirun has edited.
"$cdirun" spec --bundle "$work"
jq '.process.terminal = false | .process.args = ["/bin/true"] | del(.linux.cgroupsPath)' \
  "$work/config.json" >"$work/client.json"
for rt in "${runtimes[@]}"; do
  make_rootfs "$work/bundle-$rt/rootfs"
  cp "$work/client.json" "$work/bundle-$rt/config.json"
  mkdir -p "$work/root-$rt"
done

# rt CMD...: the runtime with its own --root.
cmd() { echo "${bin[$1]} --root $work/root-$1"; }

bench() {
  local name=$1
  shift
  echo "== $name"
  hyperfine -N --warmup 5 --runs "$runs" --export-markdown "$out/$name.md" --export-json "$out/$name.json" "$@" \
    2>&1 | grep -E '^Benchmark|Time \(mean|Range'
}

commands=()
for rt in "${runtimes[@]}"; do commands+=(-n "$rt" "$(cmd "$rt") run --bundle $work/bundle-$rt b-run"); done
bench run "${commands[@]}"

# create + start + wait for exit + delete, as a shim does it (state polled until stopped).
commands=()
for rt in "${runtimes[@]}"; do
  c=$(cmd "$rt")
  commands+=(-n "$rt" "sh -c '$c create --bundle $work/bundle-$rt b-life >/dev/null && $c start b-life && until $c state b-life | grep -q stopped; do :; done && $c delete b-life'")
done
bench lifecycle "${commands[@]}"

# state, list and exec against one long-running container per runtime.
for rt in "${runtimes[@]}"; do
  mkdir -p "$work/long-$rt"
  jq --arg rootfs "$work/bundle-$rt/rootfs" '.process.args = ["sleep", "3600"] | .root.path = $rootfs' \
    "$work/client.json" >"$work/long-$rt/config.json"
  # An id of its own: cdirun builds share the node's cgroup ledger, which refuses a second
  # container in the first one's cgroup.
  $(cmd "$rt") run --detach --bundle "$work/long-$rt" "b-long-$rt" </dev/null >/dev/null
done
for verb in state list; do
  commands=()
  for rt in "${runtimes[@]}"; do
    arg=$([ "$verb" = state ] && echo "b-long-$rt" || true)
    commands+=(-n "$rt" "$(cmd "$rt") $verb $arg")
  done
  bench "$verb" "${commands[@]}"
done
commands=()
for rt in "${runtimes[@]}"; do commands+=(-n "$rt" "$(cmd "$rt") exec b-long-$rt /bin/true"); done
bench exec "${commands[@]}"

# Peak RSS of create (+ delete), from GNU time's maximum resident set size.
echo "== peak RSS of create (KiB)"
for rt in "${runtimes[@]}"; do
  c=$(cmd "$rt")
  # The container keeps the stdio it is created with: give it none of this pipeline's.
  /usr/bin/time -o "$work/rss" -f %M $c create --bundle "$work/bundle-$rt" b-rss </dev/null >/dev/null 2>&1
  rss=$(cat "$work/rss")
  $c delete --force b-rss >/dev/null 2>&1 || true
  echo "$rt $rss"
done | tee "$out/rss.txt"

echo "== ratios (mean time of cdirun / other runtime; below 1 means cdirun is faster)"
for name in run lifecycle state list exec; do
  for ours in cdirun "${variants[@]}"; do
    jq -r --arg name "$name" --arg ours "$ours" '
      (.results | map({key: .command, value: .mean}) | from_entries) as $m
      | "\($name): \($ours) \($m[$ours] * 1000 | . * 10 | round / 10) ms, runc \($m.runc * 1000 | . * 10 | round / 10) ms, crun \($m.crun * 1000 | . * 10 | round / 10) ms; vs runc \($m[$ours] / $m.runc | . * 100 | round / 100), vs crun \($m[$ours] / $m.crun | . * 100 | round / 100)"' \
      "$out/$name.json"
  done
done | tee "$out/summary.txt"
