#!/bin/sh
# PID 1 of the user-mode Linux kernel that `make test-netem` boots (tests/netem/run-uml.sh).
# The host's / is this kernel's root, read-only (hostfs); writable places are tmpfs. It
# loads the modules the lab's netem backend needs, runs the netem tests and writes pytest's
# exit status to a host directory: a UML kernel always exits 0 itself.
# The kernel passes icelab_out= and icelab_python= (from its command line) in the environment.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
repo=$(cd "$(dirname "$0")/../.." && pwd)
say() { echo "test-netem(uml): $*" > /dev/console; }
finish() { echo "$1" > /run/netem-out/rc; sync; poweroff -f; }

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null       # CONFIG_DEVTMPFS_MOUNT may have done it
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts              # Mininet's node shells run on ptys
mount -t tmpfs tmpfs /dev/shm
# a checkout under /tmp (a CI runner may clone there) would vanish under the tmpfs below:
# bind its top folder back in place (read-only, like the rest of the host's /)
keep=""
case "$repo" in /tmp/?*) keep=$(echo "$repo" | cut -d/ -f1-3) ;; esac
mount -t tmpfs tmpfs /run                    # /run/icelab: the labs' state
if [ -n "$keep" ]; then mkdir -p /run/keep && mount --bind "$keep" /run/keep; fi
mount -t tmpfs tmpfs /tmp
if [ -n "$keep" ]; then mkdir -p "$keep" && mount --bind /run/keep "$keep"; fi
mkdir -p /run/netem-out
mount -t hostfs -o "${icelab_out:?}" none /run/netem-out || { say "cannot mount $icelab_out"; poweroff -f; }

# The modules: /lib/modules/<release> must hold them for modprobe, for the kernel's own
# module loading and for the lab's netem detection (lab/net/shaping.py). The host has no
# /lib/modules/6.1.x (and / is read-only): an overlay over /usr/lib adds it, in memory.
K=$(uname -r)
M=/usr/lib/uml/modules/$K
insmod "$M/kernel/fs/overlayfs/overlay.ko" || { say "overlayfs module missing in $M"; finish 3; }
mkdir -p /run/ov/upper /run/ov/work
mount -t overlay -o lowerdir=/usr/lib,upperdir=/run/ov/upper,workdir=/run/ov/work overlay /usr/lib || finish 3
mkdir -p "/usr/lib/modules/$K" && mount --bind "$M" "/usr/lib/modules/$K" || finish 3
# configs: /proc/config.gz, which the lab reads to find sch_netem
for m in configs sch_netem veth bridge ifb ipv6 sch_tbf sch_htb; do
    modprobe "$m" || { say "modprobe $m failed"; finish 3; }
done

# UML's own kernel, not the host's: a probe's 8 MB receive buffer (it asks for it) rides out
# a stall of the UML process instead of dropping what netem delivered
sysctl -q -w net.core.rmem_max=16777216 net.core.wmem_max=16777216

cd "$repo" || finish 3
say "kernel $K, $(nproc) CPU, $(grep MemTotal /proc/meminfo | tr -s ' ')"
# ICELAB_SHAPER=netem: the lab must use netem here, and say why not if it cannot
set --
while IFS= read -r a; do set -- "$@" "$a"; done < /run/netem-out/pytest-args
ICELAB_SHAPER=netem ICELAB_IN_UML=1 PYTHONPATH="$repo" PYTHONDONTWRITEBYTECODE=1 HOME=/tmp \
    "${icelab_python:-python3}" -m pytest -p no:cacheprovider -q -rs "$@" tests/netem \
    > /run/netem-out/pytest.log 2>&1
finish $?
