#!/usr/bin/env bash
# Installs (once) Debian's `prometheus` package, whose `prometheus` and `promtool` the
# observability tests run: promtool checks the dashboards' and alerts' PromQL, and a real
# Prometheus scrapes `kerf controller` during an end-to-end run. Prints the directory that
# holds both binaries on its last line. Fails loudly when they cannot be installed: those
# tests are never skipped.
#
# The package's maintainer scripts would start a `prometheus` service listening on :9090
# (and recommend node-exporter on :9100). Neither is wanted: the tests start Prometheus
# themselves on a free port with a throw-away data directory. So recommends are left out
# and, while apt runs, a policy-rc.d forbids starting services; one that the package
# started anyway (a machine with systemd) is stopped and disabled afterwards.
set -euo pipefail

log() { echo "install-prometheus: $*" >&2; }
have() { command -v prometheus >/dev/null && command -v promtool >/dev/null; }

if ! have; then
  command -v apt-get >/dev/null || { log "apt-get not found: install Debian's prometheus package by hand"; exit 1; }
  [[ $(id -u) -eq 0 ]] || { log "must run as root to apt-get install prometheus"; exit 1; }
  log "installing Debian's prometheus package (first time only)"

  policy=/usr/sbin/policy-rc.d
  made_policy=""
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# written by kerf tools/observe/install-prometheus.sh while apt runs\nexit 101\n' >"$policy"
    chmod +x "$policy"
    made_policy=1
  fi
  cleanup() { [[ -n $made_policy ]] && rm -f "$policy"; return 0; }
  trap cleanup EXIT

  apt=(apt-get -o DPkg::Lock::Timeout=600 -y -q)
  export DEBIAN_FRONTEND=noninteractive
  if ! "${apt[@]}" install --no-install-recommends prometheus >&2; then
    log "apt-get install failed; updating the package lists and trying again"
    "${apt[@]}" update >&2
    "${apt[@]}" install --no-install-recommends prometheus >&2 \
      || { log "apt-get install -y prometheus failed"; exit 1; }
  fi

  # Where an init system ran the service regardless, stop it so it holds no port.
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    systemctl disable --now prometheus.service >&2 2>/dev/null || true
  elif [[ -x /etc/init.d/prometheus ]]; then
    /etc/init.d/prometheus stop >&2 2>/dev/null || true
  fi
fi

have || { log "prometheus and promtool are still not on PATH after installing"; exit 1; }
log "$(prometheus --version 2>&1 | head -n1)"
dirname "$(command -v promtool)"
