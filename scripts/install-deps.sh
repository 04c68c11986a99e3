#!/usr/bin/env bash
# Installs the Debian packages cdirun's build, demo and test suites need, only when missing.
#   install-deps.sh build   : compile cdirun (libseccomp for libcontainer's seccomp support)
#   install-deps.sh demo    : build + busybox-static for the demo container's rootfs
#   install-deps.sh test    : demo + everything the test suites drive (runc, crun, podman, ...)
set -euo pipefail

build=(libseccomp-dev pkg-config gcc)
demo=("${build[@]}" busybox-static jq)
test=("${demo[@]}" runc crun podman conmon containerd hyperfine time procps iproute2 uidmap python3-grpcio python3-protobuf protobuf-compiler)

case "${1:-test}" in
  build) wanted=("${build[@]}") ;;
  demo) wanted=("${demo[@]}") ;;
  test) wanted=("${test[@]}") ;;
  *) echo "usage: $0 [build|demo|test]" >&2; exit 2 ;;
esac

missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

. "$(dirname "$0")/lib.sh"
find_cargo
