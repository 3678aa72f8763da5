# Updraft: `make demo` to see it work, `make test` to run every test.
# Both install the Debian packages they need when missing (apt-get, with sudo when not root).

SWIFT ?= swift
TEST_TIMEOUT ?= 20m
APT_PACKAGES := mosquitto mosquitto-clients libmosquitto-dev libsqlite3-dev libssl-dev pkg-config libcoap3-dev libcoap3-bin sqlite3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# aiocoap: the independent CoAP peer of the integration tests, in a venv of its own.
PYVENV := .build/pyvenv
AIOCOAP_VERSION := 0.4.17

.PHONY: all deps pyvenv build test demo bench clean

all: build

# Installs only what is missing, so it is quick on a machine that has everything.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# Debian's python3 lacks venv/ensurepip until python3-venv is installed.
pyvenv: $(PYVENV)/.aiocoap-$(AIOCOAP_VERSION)

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

build: deps
	$(SWIFT) build

test: deps pyvenv
	$(SWIFT) build --build-tests
	@# A hung test must fail the run, not stall it: Swift Testing's time limits only
	@# record an issue when a test ignores cancellation (a blocking call).
	timeout --kill-after=30 $(TEST_TIMEOUT) $(SWIFT) test --skip-build

demo: deps
	$(SWIFT) build -c release --product updraft
	$$($(SWIFT) build -c release --show-bin-path)/updraft demo

bench: deps
	$(SWIFT) build -c release --product updraft
	$$($(SWIFT) build -c release --show-bin-path)/updraft bench mqtt
	$$($(SWIFT) build -c release --show-bin-path)/updraft bench coap

clean:
	rm -rf .build

# Issue 8 item 9 at full scale: 500 simulated devices and a 1 MiB image; `updraft serve`
# is killed (SIGKILL, then SIGTERM) while they reboot after `installed` and restarted
# 0.1 s later. Prints one line of figures per signal; fails if any job fails.
.PHONY: bench-restart
bench-restart: deps
	$(SWIFT) build --build-tests
	UPDRAFT_RESTART_DEVICES=500 UPDRAFT_RESTART_IMAGE_BYTES=1048576 \
	  timeout --kill-after=30 30m $(SWIFT) test --skip-build --filter QuickRestartTests
