#!/usr/bin/env bash
# Builds cdirun's .deb with cargo-deb, installs it on this host with dpkg, runs a busybox container
# with the installed /usr/bin/cdirun and its installed /etc/cdirun/config.toml, then purges the
# package so the host is left as it was. Refuses to run where cdirun is already installed.
#
#   packaging/test-deb.sh
#
# Prints one ok/FAIL line per check and "N passed, N failed" last; exits non-zero on a failure.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
. conformance/clients/lib.sh
require_root
scripts/install-deps.sh test
find_cargo

if dpkg-query -W -f='${Status}' cdirun 2>/dev/null | grep -q installed || [ -e /usr/bin/cdirun ] ||
  [ -e /etc/cdirun ]; then
  echo "cdirun is already installed here (package, /usr/bin/cdirun or /etc/cdirun):" \
    "this test installs and purges it, so it will not run on this host" >&2
  exit 1
fi
if ! command -v cargo-deb >/dev/null; then
  # The version cargo resolves is cached in ~/.cargo/bin; later runs skip this.
  cargo install cargo-deb --locked --quiet
fi

work=$(mktemp -d /tmp/cdirun-deb.XXXXXX)
id=cdirun-deb-$$
remember_host
remember_cgroups workload.slice
# Client config the package must not touch, fingerprinted before the install.
fingerprint() { find /etc/containers /etc/containerd -type f -exec md5sum {} + 2>/dev/null | sort; }
before=$(fingerprint)
cleanup() {
  set +e
  [ -x /usr/bin/cdirun ] && /usr/bin/cdirun --root "$work/root" delete --force "$id" >/dev/null 2>&1
  dpkg-query -W cdirun >/dev/null 2>&1 && dpkg --purge cdirun >/dev/null
  forget_cgroups
  forget_host
  rm -rf "$work"
}
trap cleanup EXIT

# --- build ----------------------------------------------------------------------------------------
start=$SECONDS
# cargo deb builds the root package only; cdirun-hook is a workspace member it ships too.
check "the workspace builds" cargo build --release --locked --workspace --quiet
check "cargo deb builds the package" cargo deb --locked --output "$work/cdirun.deb"
echo "     (built in $((SECONDS - start)) s)"
[ -f "$work/cdirun.deb" ] || { summary; exit 1; }
check_output "package metadata" "cdirun admin" dpkg-deb --show --showformat '${Package} ${Section}\n' "$work/cdirun.deb"
contents=$(dpkg-deb --contents "$work/cdirun.deb" | awk '{print $NF}' | sed 's|^\./|/|')
for path in /usr/bin/cdirun /usr/bin/cdirun-hook /usr/share/doc/cdirun/examples/hooks.d/50-cdirun-ldcache.json \
  /etc/cdirun/config.toml /usr/lib/systemd/system/workload.slice \
  /usr/lib/systemd/system/pact-gpu.slice /usr/share/doc/cdirun/examples/containerd-cdirun.toml \
  /usr/share/doc/cdirun/examples/containers.conf.d-cdirun.conf /usr/share/doc/cdirun/slices.md \
  /usr/share/doc/cdirun/copyright; do
  check "package holds $path" grep -qx "$path" <<<"$contents"
done
check "package holds the man page" grep -Eqx '/usr/share/man/man8/cdirun\.8(\.gz)?' <<<"$contents"
check "config.toml is a conffile" bash -c \
  'dpkg-deb --ctrl-tarfile "$1" | tar -xO ./conffiles | grep -qx /etc/cdirun/config.toml' _ "$work/cdirun.deb"

# --- install --------------------------------------------------------------------------------------
check "dpkg -i installs it" dpkg -i "$work/cdirun.deb"
check_output "installed binary runs" "cdirun version $(awk -F'"' '/^version =/ {print $2; exit}' Cargo.toml)" \
  bash -c '/usr/bin/cdirun --version | head -n 1'
check_output "host's containerd and podman config untouched" "$before" fingerprint

# A busybox bundle run by the installed binary, which reads the installed config (no
# CDIRUN_CONFIG): its cgroup lands under workload.slice as the shipped defaults say (no cgroup
# namespace, so the container sees its host-side cgroup path).
make_rootfs "$work/bundle/rootfs"
/usr/bin/cdirun spec --bundle "$work/bundle"
jq '.process.terminal = false
  | .linux.namespaces |= map(select(.type != "cgroup"))
  | .process.args = ["sh", "-c", "echo hello from the installed cdirun; awk -F: '\''$2 == \"pids\" {print $3}'\'' /proc/self/cgroup"]' \
  "$work/bundle/config.json" >"$work/config.json"
mv "$work/config.json" "$work/bundle/config.json"
check_output "a container run with /usr/bin/cdirun and the installed config" \
  "hello from the installed cdirun
/workload.slice/$id" \
  env -u CDIRUN_CONFIG timeout 60 /usr/bin/cdirun --root "$work/root" run --bundle "$work/bundle" "$id"
check_output "the container is gone after run" "" bash -c 'ls "$1" 2>/dev/null' _ "$work/root"

# --- purge ----------------------------------------------------------------------------------------
check "dpkg --purge removes it" dpkg --purge cdirun
check_output "nothing of the package left" "" bash -c '
  for path in /usr/bin/cdirun /usr/bin/cdirun-hook /etc/cdirun /usr/share/doc/cdirun /usr/lib/systemd/system/workload.slice; do
    [ ! -e "$path" ] || echo "$path"
  done'

summary
