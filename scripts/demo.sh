#!/usr/bin/env bash
# The main job: build cdirun, make a busybox bundle, publish a CDI spec for a device node made
# with mknod, and run a container that asks for that device through a CDI annotation. No cdirun
# config file is needed: the spec goes to /var/run/cdi, one of the default spec dirs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
scripts/install-deps.sh demo
find_cargo
cargo build --release --locked --quiet
cdirun=$PWD/target/release/cdirun

work=$(mktemp -d /tmp/cdirun-demo.XXXXXX)
spec=/var/run/cdi/cdirun-demo.yaml
cleanup() {
  "$cdirun" delete --force cdirun-demo >/dev/null 2>&1 || true
  rm -rf "$work" "$spec"
}
trap cleanup EXIT

# A stand-in accelerator: a character device node 195:254 and a "driver library" directory.
mknod "$work/accel0" c 195 254
mkdir -p "$work/lib" && echo "demo driver 1.0" >"$work/lib/version"
mkdir -p /var/run/cdi
cat >"$spec" <<YAML
cdiVersion: "0.6.0"
kind: demo.cdirun.dev/accel
containerEdits:
  env: ["ACCEL_DRIVER=demo-1.0"]
  mounts:
    - hostPath: $work/lib
      containerPath: /usr/lib/accel
      options: [ro, bind]
devices:
  - name: accel0
    containerEdits:
      deviceNodes:
        - path: /dev/accel0
          hostPath: $work/accel0
YAML

make_rootfs "$work/bundle/rootfs"
"$cdirun" spec --bundle "$work/bundle"
# The container asks for the device by annotation, prints what it got, and exits.
jq '.process.terminal = false
  | .process.args = ["sh", "-c", "echo --- inside the container ---; ls -l /dev/accel0; echo ACCEL_DRIVER=$ACCEL_DRIVER; cat /usr/lib/accel/version"]
  | .annotations["cdi.k8s.io/demo"] = "demo.cdirun.dev/accel=accel0"' \
  "$work/bundle/config.json" >"$work/config.json"
mv "$work/config.json" "$work/bundle/config.json"

echo "cdirun explain (what create will change):"
"$cdirun" explain --bundle "$work/bundle" --id cdirun-demo
echo
echo "cdirun run:"
"$cdirun" run --bundle "$work/bundle" cdirun-demo
echo
echo "cdirun doctor (the node as an operator sees it; the demo spec is one of the specs checked):"
status=0
"$cdirun" doctor || status=$?
echo "doctor exit status: $status (non-zero when a check fails)"
