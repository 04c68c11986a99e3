#!/usr/bin/env bash
# Two or more cdirun builds against each other, interleaved: each round runs every build once in
# a random order (`run /bin/true`, then create+start+wait+delete), so that a machine that drifts
# while a benchmark runs (hyperfine times one command's runs back to back) weighs on every
# build alike. For one speed lever at a time: the first build is the baseline, the others each
# differ from it in one thing. Same layout as benches/commands.sh (a private mount namespace,
# the cgroup2 mount detached).
#   benches/levers.sh ROUNDS base=target/release/cdirun relr=/tmp/cdirun-relr ...
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root

if [ "${1:-}" != --inside ]; then
  [ $# -ge 3 ] || { echo "usage: $0 ROUNDS NAME=BINARY NAME=BINARY..." >&2; exit 2; }
  exec unshare --mount --propagation private "$0" --inside "$@"
fi
shift
rounds=$1
shift
umount /sys/fs/cgroup/unified 2>/dev/null || true
mount -t tmpfs -o size=1m hidden /sys/fs/cgroup/unified

work=$(mktemp -d /tmp/cdirun-levers.XXXXXX)
cleanup() {
  for variant in "$@"; do
    name=${variant%%=*}
    for dir in "$work/root-$name"/l-*; do
      if [ -e "$dir" ]; then
        "${variant#*=}" --root "$work/root-$name" delete --force "$(basename "$dir")" >/dev/null 2>&1 || true
      fi
    done
  done
  rm -rf "$work"
}
trap 'cleanup "$@"' EXIT

"${1#*=}" spec --bundle "$work"
jq '.process.terminal = false | .process.args = ["/bin/true"] | del(.linux.cgroupsPath)' \
  "$work/config.json" >"$work/client.json"
for variant in "$@"; do
  name=${variant%%=*}
  make_rootfs "$work/bundle-$name/rootfs"
  cp "$work/client.json" "$work/bundle-$name/config.json"
  mkdir -p "$work/root-$name"
done

python3 - "$work" "$rounds" "$@" <<'EOF'
import random, statistics, subprocess, sys, time

work, rounds = sys.argv[1], int(sys.argv[2])
builds = dict(arg.split("=", 1) for arg in sys.argv[3:])
quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)

def timed(steps):
    start = time.perf_counter()
    steps()
    return time.perf_counter() - start

def run(name):
    binary, root = builds[name], ["--root", f"{work}/root-{name}"]
    subprocess.run([binary, *root, "run", "--bundle", f"{work}/bundle-{name}", f"l-run-{name}"], **quiet)

def lifecycle(name):
    binary, root, cid = builds[name], ["--root", f"{work}/root-{name}"], f"l-life-{name}"
    subprocess.run([binary, *root, "create", "--bundle", f"{work}/bundle-{name}", cid], **quiet)
    subprocess.run([binary, *root, "start", cid], check=True)
    while b'"stopped"' not in subprocess.run([binary, *root, "state", cid], capture_output=True).stdout:
        pass
    subprocess.run([binary, *root, "delete", cid], check=True)

times = {what: {name: [] for name in builds} for what in ("run", "lifecycle")}
for _ in range(rounds):
    for what, steps in (("run", run), ("lifecycle", lifecycle)):
        order = list(builds)
        random.shuffle(order)
        for name in order:
            times[what][name].append(timed(lambda: steps(name)))

base = next(iter(builds))
for what, by_build in times.items():
    for name, xs in by_build.items():
        ratio = statistics.median(xs) / statistics.median(by_build[base])
        print(f"{what}: {name} mean {statistics.mean(xs) * 1000:.1f} ms, median "
              f"{statistics.median(xs) * 1000:.1f} ms; median / {base} {ratio:.3f}")
EOF
