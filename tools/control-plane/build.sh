#!/usr/bin/env bash
# Builds (once) the real control plane the end-to-end tests run on: kube-apiserver,
# kube-scheduler and kube-controller-manager from the k8s.io/kubernetes module, etcd from
# go.etcd.io/etcd/server/v3, and kwok. Go is a test dependency only; nothing here becomes
# part of kerf. The binaries are cached outside the tracked tree and reused:
#
#   $KERF_CONTROL_PLANE_DIR (default ~/.cache/kerf/control-plane/<versions>)/bin/
#
# Prints that bin directory on its last line. Safe to run concurrently (flock).
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-0.8.0}"

root="${KERF_CONTROL_PLANE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kerf/control-plane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION}"
bin="$root/bin"
mkdir -p "$root"

want=(kube-apiserver kube-scheduler kube-controller-manager etcd kwok)
have_all() { for b in "${want[@]}"; do [[ -x "$bin/$b" ]] || return 1; done; }
if have_all; then echo "$bin"; exit 0; fi

exec 9>"$root/.lock"
flock 9
if have_all; then echo "$bin"; exit 0; fi

command -v go >/dev/null || { echo "control-plane: go is not installed (needed to build the test control plane)" >&2; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
# A private module and build cache, removed once the binaries exist: Kubernetes' sources
# and objects are several GB that nothing needs after this (a CI machine's disk is finite).
export GOMODCACHE="$root/.go/mod" GOCACHE="$root/.go/cache"
scratch_clean() { chmod -R u+w "$root/.go" 2>/dev/null || true; rm -rf "$root/.go"; }
mkdir -p "$bin"
log() { echo "control-plane: $*" >&2; }

# --- kube-apiserver, kube-scheduler, kube-controller-manager -------------------------------
# k/k's go.mod requires each staging module at v0.0.0 and replaces it with ./staging/...,
# which a dependent module ignores: pin each one to its published v0.<minor>.<patch>,
# the list read from that version's own go.mod rather than written out here.
if ! [[ -x "$bin/kube-apiserver" && -x "$bin/kube-scheduler" && -x "$bin/kube-controller-manager" ]]; then
  log "building Kubernetes v$K8S_VERSION (first time only; ~15-25 min on 2 cores)"
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  staging="v0.${K8S_VERSION#1.}"
  mod="$root/kube"
  rm -rf "$mod"; mkdir -p "$mod"
  (
    cd "$mod"
    go mod init local/kerf-kube-bins >/dev/null 2>&1
    gomod=$(cd / && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [[ -f "$gomod" ]] || { log "could not download k8s.io/kubernetes@v$K8S_VERSION"; exit 1; }
    for m in $(sed -n 's|^\s*\(k8s.io/[^ ]*\) => ./staging/src/.*|\1|p' "$gomod"); do
      go mod edit "-replace=$m=$m@$staging"
    done
    go mod edit "-require=k8s.io/kubernetes@v$K8S_VERSION"
    cat > tools.go <<GO
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
    go mod tidy -e >/dev/null
    ldflags="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags="$ldflags -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
      ldflags="$ldflags -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    go build -trimpath -tags selinux,notest -ldflags "$ldflags" -o "$bin/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-scheduler \
      k8s.io/kubernetes/cmd/kube-controller-manager
  )
fi

# --- etcd -------------------------------------------------------------------------------
# server/v3's go.mod has replace lines, so `go install` refuses it; a wrapper main does not.
if ! [[ -x "$bin/etcd" ]]; then
  log "building etcd v$ETCD_VERSION"
  mod="$root/etcd"
  rm -rf "$mod"; mkdir -p "$mod"
  (
    cd "$mod"
    go mod init local/kerf-etcd >/dev/null 2>&1
    cat > main.go <<GO
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null 2>&1
    go mod tidy >/dev/null
    go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .
  )
fi

# --- kwok -------------------------------------------------------------------------------
if ! [[ -x "$bin/kwok" ]]; then
  log "building kwok v$KWOK_VERSION"
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
  # kwok v0.8.0 ships no built-in stages: keep the module's own fast stages beside it.
  stages="$(go env GOMODCACHE)/sigs.k8s.io/kwok@v$KWOK_VERSION/kustomize/stage"
  if [[ ! -d "$stages" ]]; then
    (cd / && go mod download "sigs.k8s.io/kwok@v$KWOK_VERSION")
  fi
  mkdir -p "$root/kwok-stages"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    cp "$stages/$f" "$root/kwok-stages/$(basename "$f")"
  done
  chmod u+w "$root/kwok-stages"/*
fi

have_all || { log "some binaries are missing after the build"; exit 1; }
scratch_clean
echo "$bin"
