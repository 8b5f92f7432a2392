#!/usr/bin/env bash
# `make test-netem`: boot Debian's user-mode Linux kernel (6.1, sch_netem among its modules)
# over this machine's / and run tests/netem there with the lab's netem backend; exit with
# pytest's status. Usage: tests/netem/run-uml.sh PYTHON [PYTEST ARGS...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 PYTHON [PYTEST ARGS...]"; exit 2; }
# absolute, symlinks kept: a virtualenv's python must stay its own path
python=$1
case "$python" in /*) ;; */*) python=$PWD/$python ;; *) python=$(command -v "$python") ;; esac
shift
[ "$(id -u)" = 0 ] || { echo "test-netem boots a kernel whose tests build namespaces: run it as root"; exit 1; }
command -v linux.uml >/dev/null || { echo "linux.uml is missing: 'sudo make test-netem' installs user-mode-linux"; exit 1; }
out=$(mktemp -d /tmp/icelab-netem.XXXXXX)
trap 'rm -rf "$out"' EXIT
# hostfs takes its host path as a mount option, the kernel command line splits at spaces
case "$out$here$python" in *[,\ ]*) echo "paths with commas or spaces cannot cross into UML: $here $python"; exit 1;; esac
: > "$out/pytest-args"
[ $# -eq 0 ] || printf '%s\n' "$@" > "$out/pytest-args"
echo "test-netem: booting user-mode Linux ($(readlink -f "$(command -v linux.uml)")), tests/netem inside"
start=$(date +%s)
# Kernel parameters with '=' that the kernel does not know reach init as its environment.
# UML has one vCPU; its 1 GB of memory is a file in the host's TMPDIR (/tmp). Its timers
# (netem's among them) fire when the host runs the UML process: on a busy host, nice -10
# keeps other jobs from making every netem delay late by their time slices.
nice -n -10 timeout --kill-after=10 "${NETEM_TIMEOUT:-900}" linux.uml mem=1G quiet \
    rootfstype=hostfs rootflags=/ ro init="$here/uml-init.sh" con=null con0=null,fd:1 \
    icelab_out="$out" icelab_python="$python" </dev/null >"$out/console.log" 2>&1 || true
cat "$out/pytest.log" 2>/dev/null || true
if [ ! -s "$out/rc" ]; then
    echo "test-netem: the UML kernel ended without a result after $(( $(date +%s) - start )) s; its console:"
    tail -40 "$out/console.log"
    exit 1
fi
rc=$(cat "$out/rc")
if [ ! -s "$out/pytest.log" ]; then
    echo "test-netem: UML stopped before pytest ran; its console:"
    tail -40 "$out/console.log"
fi
echo "test-netem: pytest exit status $rc, $(( $(date +%s) - start )) s in user-mode Linux"
exit "$rc"
