#!/usr/bin/env bash
# Builds the KEDA operator and KEDA's metrics API server from KEDA's published
# Go module at a pinned tag, into a cache keyed by version. The wrapper module
# repeats KEDA's own replace directives, generated from KEDA's go.mod.
#
#   tests/keda/build_keda.sh [keda-operator] [keda-metrics-apiserver]
# Env: KEDAHTTP_CACHE_DIR (default ~/.cache/keda-http-deno), KEDA_VERSION.
set -euo pipefail

KEDA_VERSION="${KEDA_VERSION:-v2.20.2}"
CACHE="${KEDAHTTP_CACHE_DIR:-$HOME/.cache/keda-http-deno}"
ROOT="$CACHE/keda-$KEDA_VERSION"
BIN="$ROOT/bin"
MOD="$ROOT/mod"
mkdir -p "$BIN" "$MOD"

components=("$@")
[ ${#components[@]} -eq 0 ] && components=(keda-operator keda-metrics-apiserver)

command -v go >/dev/null || { echo "build_keda: Go is required; install it and retry" >&2; exit 1; }
log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

wrapper() {
  [ -f "$MOD/.complete" ] && return 0
  log "downloading github.com/kedacore/keda/v2@$KEDA_VERSION go.mod"
  local gomod
  gomod=$(cd "$MOD" && GOFLAGS=-mod=mod go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || { echo "build_keda: could not download KEDA $KEDA_VERSION from the Go module proxy" >&2; exit 1; }
  {
    echo "module kedahttp.local/kedabuild"
    echo
    sed -n 's/^go \(.*\)/go \1/p' "$gomod" | head -1
    echo
    echo "require github.com/kedacore/keda/v2 $KEDA_VERSION"
    echo
    # KEDA's replace block, verbatim, so the build resolves as KEDA's does.
    sed -n '/^replace (/,/^)/p' "$gomod"
    grep -E '^replace [^(]' "$gomod" || true
  } > "$MOD/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "github.com/kedacore/keda/v2/cmd/operator"\n\t_ "github.com/kedacore/keda/v2/cmd/adapter"\n)\n' > "$MOD/tools.go"
  log "resolving KEDA's module graph (downloads a few hundred modules the first time)"
  (cd "$MOD" && go mod tidy >&2)
  touch "$MOD/.complete"
}

build() {
  local name="$1" pkg="$2"
  [ -x "$BIN/$name" ] && return 0
  wrapper
  log "building $name $KEDA_VERSION (first time takes several minutes)"
  (cd "$MOD" && go build -trimpath -ldflags "-s -w -X github.com/kedacore/keda/v2/version.Version=$KEDA_VERSION" -o "$BIN/$name.tmp" "$pkg" && mv "$BIN/$name.tmp" "$BIN/$name")
  log "$name ready: $BIN/$name"
}

for c in "${components[@]}"; do
  case "$c" in
    keda-operator) build keda-operator github.com/kedacore/keda/v2/cmd/operator ;;
    keda-metrics-apiserver) build keda-metrics-apiserver github.com/kedacore/keda/v2/cmd/adapter ;;
    crds)
      d=$(cd "$MOD" 2>/dev/null && go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
      echo "$d/config/crd/bases" ;;
    *) echo "build_keda: unknown component '$c' (known: keda-operator keda-metrics-apiserver crds)" >&2; exit 2 ;;
  esac
done
echo "$BIN"
