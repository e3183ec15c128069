#!/bin/busybox sh
# /init of the rig's guest: load the modules, mount the shares, bind the first edu device to vfio-pci,
# run the command inside the host's root (read-only over 9p), write the exit code to the results
# share, power off. Variables arrive as KEY=value words on the kernel command line.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin:/usr/local/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in $(cat /modules/order); do insmod "/modules/$module" 2>/dev/null; done
mount -t 9p -o trans=virtio,version=9p2000.L,cache=loose hostroot /newroot
mount -t 9p -o trans=virtio,version=9p2000.L results /results
# A lane with its own userland (arm64): this machine's root comes as a second share, at /host.
if [ -n "$USERLAND" ]; then
  mount -t 9p -o trans=virtio,version=9p2000.L,cache=loose host /newroot/host
  source="/newroot/host$REPO"
  export NODE_PATH=/opt/node_modules
else
  source="/newroot$REPO"
fi
# Hold on to the repository before /tmp is covered: a clone may live under /tmp.
mkdir -p /repo
mount --bind "$source" /repo
# The host root is read-only: give the guest its own /tmp, /dev, /proc, /sys inside it.
mount -t tmpfs tmpfs /newroot/tmp
mkdir -p /newroot/tmp/results
mount --bind /results /newroot/tmp/results
mount --bind /dev /newroot/dev
mount --bind /proc /newroot/proc
mount --bind /sys /newroot/sys
mount -t tmpfs tmpfs /newroot/run 2>/dev/null
mkdir -p "/newroot$REPO" 2>/dev/null
mount --bind /repo "/newroot$REPO"
# The first QEMU edu (1234:11e8) to vfio-pci through driver_override
# (docs/kernel-rules.md#binding-with-driver-override). The second (0000:00:10.0) stays unbound, as
# the simulator's presets have it: the hot-plug tests bind it, and unbind it when done.
for device in /sys/bus/pci/devices/*; do
  if [ "$(cat "$device/vendor")" = "0x1234" ] && [ "$(cat "$device/device")" = "0x11e8" ]; then
    if [ ! -e /results/edu-address ]; then
      echo vfio-pci > "$device/driver_override"
      basename "$device" > /sys/bus/pci/drivers_probe
      basename "$device" > /results/edu-address
    else
      basename "$device" > /results/edu2-address
    fi
  fi
done
# A few hugepages for tests that want them (2 MiB pages).
echo 64 > /proc/sys/vm/nr_hugepages 2>/dev/null
command="$(cat /results/command)"
chroot /newroot /bin/sh -c "cd '$REPO' && export HOME=/tmp NO_COLOR=1 CI='$CI' IOAS_REAL_KERNEL='$LANE' NODE_PATH='$NODE_PATH' PATH='$PATH' && $command" > /results/output.log 2>&1
echo $? > /results/exit-code
dmesg > /results/dmesg.log 2>/dev/null
sync
poweroff -f
