# icelab: `sudo make demo` runs the main job, `sudo make test` the tests.
# `setup` installs everything on a fresh Debian 12 / Ubuntu 22.04+ machine (as root),
# idempotently: apt packages only when missing, the virtualenv only when pyproject changes.

SHELL := /bin/bash
# The first Python >= 3.11 on PATH (found when the recipe runs, after apt may have added one).
FIND_PYTHON := for p in $(PYTHON) python3.13 python3.12 python3.11 python3; do \
	  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	  && { command -v $$p; break; }; done
VENV := .venv
BIN := $(VENV)/bin
# mininet for mnexec (without Open vSwitch: icelab uses Linux bridges in namespaces);
# the others are the real parts labs run: nftables, tcpdump, coturn, OpenVPN; iptables for
# the link shaper (xt NFQUEUE: this kernel has no nft queue); chromium (optional) runs the real
# connect-rtc-js softphone library beside the emulated one.
APT_PACKAGES := mininet net-tools iproute2 iputils-ping procps util-linux nftables tcpdump coturn openvpn socat iptables chromium
PYTEST_ARGS ?=
# the deployment the demo's firewall policies are judged in (docs/policy.md)
POLICY_ARGS := --agents 10.20.0.0/23 --os windows --os linux --ip-ranges tests/policy/ip-ranges.json \
	--region eu-west-2 --interfaces inside=ens192,outside=ens160
# test-netem: Debian's user-mode Linux kernel (it has sch_netem, this VM's kernel has not)
# and kmod (modprobe inside it)
NETEM_APT_PACKAGES := user-mode-linux kmod

# where `make setup` puts the `icelab` command: on root's PATH, sudo's secure_path included
BINDIR ?= /usr/local/bin

.PHONY: setup apt apt-netem venv path demo test test-netem fidelity bench scale clean-labs help

help:
	@echo "sudo make demo   run the scenario set (broken vs fixed networks); reports in out/"
	@echo "sudo make test   run the test suite (real namespaces: needs root)"
	@echo "sudo make test-netem  the netem backend's tests, in a user-mode Linux kernel that has netem"
	@echo "sudo make fidelity  the emulated softphone against connect-rtc-js in Chromium, fault by fault"
	@echo "sudo make setup  install apt packages and the virtualenv ($(VENV))"
	@echo "sudo make bench  build/teardown benchmarks (results: docs/benchmarks.md)"
	@echo "sudo make scale  200 concurrent verified calls in the contact-centre lab; light vs full media cost"

setup: apt venv path

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  [ "$$(id -u)" = 0 ] || { echo "apt packages missing ($$missing): run 'sudo make setup'"; exit 1; }; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@if [ -z "$$($(FIND_PYTHON))" ]; then \
	  echo "no Python >= 3.11 found; installing one (Ubuntu 22.04: python3.11)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq python3.11 python3.11-venv >/dev/null 2>&1 || apt-get install -y -qq python3 python3-venv >/dev/null; fi

# Bytecode for the checkout: an editable install is not compiled by pip, and a shell with
# PYTHONDONTWRITEBYTECODE set would compile every module on every command (~0.1 s of start-up).
venv: $(VENV)/.installed
	@$(BIN)/python -m compileall -q lab >/dev/null

$(VENV)/.installed: pyproject.toml
	@py="$$($(FIND_PYTHON))"; [ -n "$$py" ] || { echo "no Python >= 3.11: run 'sudo make setup'"; exit 1; }; \
	if [ ! -x $(BIN)/python ]; then \
	  $$py -m venv $(VENV) 2>/dev/null || { \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && $$py -m venv $(VENV); }; \
	fi
	@# compat: the checkout on sys.path by a .pth line, not setuptools' editable import hook,
	@# which every interpreter of the virtualenv runs at start-up (docs/benchmarks.md, Start-up)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[lab,test]' --config-settings editable_mode=compat
	@touch $@

# `icelab` on PATH: a wrapper that runs this checkout with its virtualenv's packages (not a link
# to .venv/bin/icelab: that one runs whichever checkout the virtualenv was installed from).
# A BINDIR/icelab that is not such a wrapper is left alone.
path:
	@w="$(BINDIR)/icelab"; \
	if [ -e "$$w" ] && ! grep -q "written by 'make setup'" "$$w" 2>/dev/null; then \
	  echo "$$w exists and is not icelab's wrapper: left alone (use $(abspath $(BIN))/icelab)"; exit 0; fi; \
	mkdir -p "$(BINDIR)" 2>/dev/null; \
	{ printf '#!/bin/sh\n# written by '"'"'make setup'"'"' in %s: icelab from that checkout\n' "$(CURDIR)"; \
	  printf 'PYTHONPATH="%s$${PYTHONPATH:+:$$PYTHONPATH}" exec %s/python -m lab.cli "$$@"\n' "$(CURDIR)" "$(abspath $(BIN))"; \
	} > "$$w.tmp" 2>/dev/null && chmod 755 "$$w.tmp" && mv "$$w.tmp" "$$w" \
	  || { rm -f "$$w.tmp"; echo "cannot write $$w: run 'sudo make setup' (or use $(abspath $(BIN))/icelab)"; }

demo: setup
	$(BIN)/icelab validate topologies/*.yaml
	@mkdir -p out
	$(BIN)/icelab graph topologies/office-firewall.yaml -o out/office-firewall.svg
	$(BIN)/icelab verify scenarios --parallel 2 --junit out/junit.xml -o out
	@echo "== an engineer's firewall policy that blocks the softphone (exit 1: a verified fix is written), then the fixed policy"
	$(BIN)/icelab policy check tests/policy/policies/udp3478-missing.rules $(POLICY_ARGS) --report out/policy-broken.md \
	  --write-fixed out/udp3478-fixed.rules; test $$? -eq 1
	$(BIN)/icelab policy check out/udp3478-fixed.rules $(POLICY_ARGS) --report out/policy-fixed.md

# The suite in two passes (docs/testing.md): first on TEST_WORKERS pytest-xdist workers (the
# tests mostly wait on timers: ICE timeouts, calls, labs), then the tests marked `serial` alone
# (timing precision, or acting on the whole host). Both run; the first failing status is kept.
# Exit status 5 of a pass (PYTEST_ARGS named no test of it) is not a failure.
TEST_WORKERS ?= 4
test: setup
	@SECONDS=0; $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not serial" $(PYTEST_ARGS); a=$$?; \
	echo "== the parallel pass ($(TEST_WORKERS) workers): $$SECONDS s"; \
	case $$a in 2|3|4) exit $$a;; esac; \
	echo "== the serial pass: tests that run alone (tests/conftest.py SERIAL)"; SECONDS=0; \
	$(BIN)/python -m pytest -q -m serial $(PYTEST_ARGS); b=$$?; \
	echo "== the serial pass: $$SECONDS s"; \
	[ $$a = 5 ] && [ $$b = 5 ] && exit 5; [ $$a = 5 ] && a=0; [ $$b = 5 ] && b=0; exit $$(( a ? a : b ))

# The lab's netem backend, run for real: boots user-mode Linux over this checkout and runs
# tests/netem inside it (tests/netem/run-uml.sh says how); a few minutes.
test-netem: setup apt-netem
	tests/netem/run-uml.sh $(BIN)/python $(PYTEST_ARGS)

apt-netem:
	@missing=$$(for p in $(NETEM_APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  [ "$$(id -u)" = 0 ] || { echo "apt packages missing ($$missing): run 'sudo make test-netem'"; exit 1; }; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# every fault of tests/fidelity/ with both engines (docs/fidelity.md); needs Chromium
fidelity: setup
	ICELAB_FIDELITY_LOSSY=1 $(BIN)/python -m pytest -q tests/fidelity $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/build_teardown.py

# calls at scale (issue 18, docs/scale.md): the 200-call scenario (over a minute, so not in the
# suite, which runs its 40-call version), then the cost per call of both media paths
scale: setup
	$(BIN)/icelab run bench/scenarios/calls-200.yaml -o out/scale
	$(BIN)/python bench/calls_load.py --full 40 --light 40 200 --talk 25 --over 5

clean-labs: venv
	$(BIN)/icelab clean
