#!/usr/bin/env bash
# Installs the Debian packages cdirun's build, demo and test suites need, only when missing.
#   install-deps.sh build   : compile cdirun (libseccomp for seccomp, libelf and zlib for the
#                             vendored libbpf behind cgroup v2 device rules)
#   install-deps.sh demo    : build + busybox-static for the demo container's rootfs
#   install-deps.sh test    : demo + everything the test suites drive (runc, crun, podman, ...)
#   install-deps.sh vm      : the guests of conformance/cgroupv2 and conformance/systemd
#                             (mmdebstrap, QEMU, systemd-nspawn)
set -euo pipefail

build=(libseccomp-dev libelf-dev zlib1g-dev make pkg-config gcc)
demo=("${build[@]}" busybox-static jq)
vm=(mmdebstrap qemu-system-x86 systemd-container e2fsprogs openssh-client jq)
test=("${demo[@]}" "${vm[@]}" runc crun podman conmon catatonit containerd docker.io tini hyperfine time procps iproute2 uidmap python3-grpcio python3-protobuf protobuf-compiler)

case "${1:-test}" in
  build) wanted=("${build[@]}") ;;
  demo) wanted=("${demo[@]}") ;;
  test) wanted=("${test[@]}") ;;
  vm) wanted=("${vm[@]}") ;;
  *) echo "usage: $0 [build|demo|test|vm]" >&2; exit 2 ;;
esac

missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # A qemu-utils newer than the release's (a backport some images carry) breaks the release's
  # qemu-system-x86: take the release's qemu-utils with it.
  extra=()
  if [[ " ${missing[*]} " == *" qemu-system-x86 "* ]] && dpkg-query -W qemu-utils >/dev/null 2>&1; then
    extra=(--allow-downgrades "qemu-utils/$(. /etc/os-release && echo "$VERSION_CODENAME")")
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" "${extra[@]}" >/dev/null
fi

. "$(dirname "$0")/lib.sh"
find_cargo
