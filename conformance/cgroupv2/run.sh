#!/usr/bin/env bash
# The cgroup v2 suite: boots a Debian 12 guest with Debian's kernel and a pure cgroup v2
# hierarchy with every controller (the layout of current Kubernetes nodes; this host binds its
# controllers to v1), under QEMU with a booted systemd, and runs conformance/cgroupv2/guest.sh
# in it: cdirun, runc and crun on the same bundles, with both cgroup drivers.
#
#   CDIRUN_BIN=target/release/cdirun conformance/cgroupv2/run.sh
#
# Everything lives under target/cgroupv2-vm: the rootfs (mmdebstrap from this host's apt
# sources, about 3 min, kept while its package list is unchanged; ROOTFS_ONLY=1 makes just it), the disk image made from it
# (about 1 min, made anew each run so every run starts from the same guest), the ssh key and the
# console log. The guest's only network is a loopback-only ssh forward; it reaches the binaries
# under test through a read-only 9p share. QEMU runs with TCG (software emulation): KVM guests
# stall on this machine. VM_ACCEL=kvm tries KVM elsewhere.
set -euo pipefail
exec </dev/null
repo=$(cd "$(dirname "$0")/../.." && pwd)
. "$repo/scripts/lib.sh"
require_root
"$repo/scripts/install-deps.sh" vm

vm=$repo/target/cgroupv2-vm
rootfs=$vm/rootfs
share=$vm/share
port=${VM_SSH_PORT:-22723}
mkdir -p "$vm"
log() { printf '[%(%T)T] %s\n' -1 "$*" >&2; }

# --- rootfs: kept across runs while the package list is the same ---
packages=systemd,systemd-sysv,dbus,libpam-systemd,procps,kmod,iproute2,openssh-server
packages+=,linux-image-amd64,initramfs-tools,runc,crun,busybox-static,jq,containerd
if [ "$(cat "$vm/rootfs.packages" 2>/dev/null)" != "$packages" ] || [ ! -x "$rootfs/lib/systemd/systemd" ]; then
  rm -rf "$rootfs" "$vm/rootfs.packages"
  sources=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] && grep -qs debian "$f" && sources+=("$f")
  done
  ((${#sources[@]})) || { echo "cgroupv2: no Debian apt sources on this host" >&2; exit 1; }
  start=$SECONDS
  mmdebstrap --quiet --variant=minbase --include="$packages" \
    --customize-hook='chroot "$1" passwd -d root' \
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
    bookworm "$rootfs" "${sources[@]}"
  chroot "$rootfs" systemctl mask systemd-networkd-wait-online.service apt-daily.timer \
    apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer systemd-timesyncd.service >/dev/null 2>&1 || true
  echo "$packages" >"$vm/rootfs.packages"
  log "rootfs made in $((SECONDS - start)) s"
fi

# conformance/systemd boots the same rootfs under systemd-nspawn.
[ "${ROOTFS_ONLY:-0}" = 1 ] && exit 0

cdirun=${CDIRUN_BIN:-$repo/target/release/cdirun}
[ -x "$cdirun" ] || { echo "cgroupv2: no cdirun binary at $cdirun (build it first)" >&2; exit 1; }
hook=$(dirname "$cdirun")/cdirun-hook

# --- disk image: the rootfs with an ssh key, 9p mounts and networking ---
[ -f "$vm/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$vm/id_ed25519"
start=$SECONDS
image_root=$vm/image-root
rm -rf "$image_root" && cp -a "$rootfs" "$image_root"
chroot "$image_root" ssh-keygen -A >/dev/null
install -d -m 700 "$image_root/root/.ssh"
install -m 600 "$vm/id_ed25519.pub" "$image_root/root/.ssh/authorized_keys"
chroot "$image_root" systemctl enable ssh.service systemd-networkd.service >/dev/null 2>&1
mkdir -p "$image_root/lab"
cat >"$image_root/etc/fstab" <<'FSTAB'
/dev/vda / ext4 rw,noatime 0 1
lab /lab 9p trans=virtio,version=9p2000.L,msize=1048576,ro 0 0
FSTAB
printf '9p\n9pnet_virtio\n' >"$image_root/etc/modules-load.d/9p.conf"
echo cgroupv2vm >"$image_root/etc/hostname"
printf '[Match]\nName=en* eth*\n[Network]\nDHCP=yes\n' >"$image_root/etc/systemd/network/10-eth.network"
rm -f "$vm/disk.img" && truncate -s 4G "$vm/disk.img"
mkfs.ext4 -q -F -L cgroupv2vm -d "$image_root" "$vm/disk.img"
rm -rf "$image_root"
log "disk image made in $((SECONDS - start)) s"

# --- what the guest runs: the binaries under test and the guest suite, read-only ---
rm -rf "$share" && mkdir -p "$share"
cp "$cdirun" "$share/cdirun"
[ -x "$hook" ] && cp "$hook" "$share/cdirun-hook"
cp "$repo/conformance/cgroupv2/guest.sh" "$share/guest.sh"

# --- boot ---
ssh_cmd=(ssh -q -i "$vm/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o ConnectTimeout=5 -o BatchMode=yes -o ServerAliveInterval=10 -p "$port" root@127.0.0.1)
qemu_pid=
stop_vm() {
  [ -n "$qemu_pid" ] || return 0
  "${ssh_cmd[@]}" systemctl poweroff >/dev/null 2>&1 || true
  for _ in $(seq 300); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
  kill "$qemu_pid" 2>/dev/null || true
  qemu_pid=
  rm -f "$vm/qemu.pid"
}
trap stop_vm EXIT
kernel=$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -n 1)
initrd=${kernel/vmlinuz/initrd.img}
case ${VM_ACCEL:-tcg} in
  kvm) accel=(-enable-kvm -cpu host) ;;
  *) accel=(-accel tcg,thread=multi,tb-size=512 -cpu max) ;;
esac
start=$SECONDS
qemu-system-x86_64 "${accel[@]}" -smp 2 -m 3072 -no-reboot \
  -kernel "$kernel" -initrd "$initrd" \
  -append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1" \
  -drive file="$vm/disk.img",format=raw,if=virtio,cache=unsafe \
  -virtfs local,path="$share",mount_tag=lab,security_model=none,readonly=on,id=lab \
  -nic user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:$port-:22 \
  -serial file:"$vm/console.log" -monitor none -display none \
  -pidfile "$vm/qemu.pid" -daemonize
qemu_pid=$(cat "$vm/qemu.pid")
until "${ssh_cmd[@]}" true 2>/dev/null; do
  if ((SECONDS - start > 420)) || ! kill -0 "$qemu_pid" 2>/dev/null; then
    tail -n 30 "$vm/console.log"
    echo "cgroupv2: the guest did not come up"
    echo "0 passed, 1 failed"
    exit 1
  fi
  sleep 2
done
"${ssh_cmd[@]}" systemctl is-system-running --wait >/dev/null 2>&1 || true
log "guest up in $((SECONDS - start)) s: $("${ssh_cmd[@]}" 'uname -r; cat /sys/fs/cgroup/cgroup.controllers' | tr '\n' ' ')"

start=$SECONDS
set +e
"${ssh_cmd[@]}" bash /lab/guest.sh /lab
rc=$?
set -e
log "guest suite took $((SECONDS - start)) s"
exit "$rc"
