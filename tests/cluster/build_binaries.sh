#!/usr/bin/env bash
# Builds the control-plane binaries the local cluster runs, from published Go
# modules, into a cache keyed by version. Rebuilds only what is missing.
#
#   tests/cluster/build_binaries.sh [component...]
#
# Components: etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl
# (default: all). Prints the k8s bin dir on stdout; progress goes to stderr.
# Concurrent runs wait for each other through a lock file in the cache.
# Env: KEDAHTTP_CACHE_DIR (default ~/.cache/keda-http-deno), K8S_VERSION, ETCD_VERSION.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.5}"
CACHE="${KEDAHTTP_CACHE_DIR:-$HOME/.cache/keda-http-deno}"
BIN="$CACHE/k8s-$K8S_VERSION/bin"
ETCD_BIN="$CACHE/etcd-$ETCD_VERSION/bin"
mkdir -p "$BIN" "$ETCD_BIN"

components=("$@")
[ ${#components[@]} -eq 0 ] && components=(etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl)

command -v go >/dev/null || { echo "build_binaries: Go is required (https://go.dev/dl); install it and retry" >&2; exit 1; }

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# One build at a time per cache: a second caller (another test run) waits,
# then finds the binaries and builds nothing.
exec 9>"$CACHE/.build.lock"
if ! flock -n 9; then
  log "another build is running (lock $CACHE/.build.lock); waiting for it"
  flock 9
fi

# Prints elapsed time every 30s while a long go build runs, so callers see progress.
with_progress() {
  local what="$1"; shift
  local start=$SECONDS
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (( (SECONDS - start) % 30 == 0 )) && kill -0 "$pid" 2>/dev/null; then
      log "$what: still compiling ($((SECONDS - start))s)"
    fi
  done
  wait "$pid"
}

build_etcd() {
  [ -x "$ETCD_BIN/etcd" ] && return 0
  local dir="$CACHE/etcd-$ETCD_VERSION/mod"
  mkdir -p "$dir"
  if [ ! -f "$dir/go.mod" ]; then
    (cd "$dir" && go mod init kedahttp.local/etcdbuild >/dev/null 2>&1 && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2)
  fi
  log "building etcd $ETCD_VERSION (first time takes a few minutes)"
  local start=$SECONDS
  (cd "$dir" && with_progress etcd go build -trimpath -o "$ETCD_BIN/etcd.tmp" go.etcd.io/etcd/server/v3 && mv "$ETCD_BIN/etcd.tmp" "$ETCD_BIN/etcd")
  log "etcd ready in $((SECONDS - start))s: $ETCD_BIN/etcd"
}

k8s_wrapper() {
  local dir="$CACHE/k8s-$K8S_VERSION/mod"
  if [ -f "$dir/go.sum" ] && [ -f "$dir/.complete" ]; then echo "$dir"; return 0; fi
  mkdir -p "$dir"
  log "downloading k8s.io/kubernetes@$K8S_VERSION go.mod"
  local gomod
  gomod=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || { echo "build_binaries: could not download k8s.io/kubernetes@$K8S_VERSION from the Go module proxy" >&2; exit 1; }
  # k8s.io/kubernetes replaces each staging module with a local path; a consumer
  # must pin each one to the published v0.X.Y instead. Generate that list from
  # the module's own go.mod so it never drifts from the version.
  local staging="v0.${K8S_VERSION#v1.}"
  {
    echo "module kedahttp.local/k8sbuild"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//; s/\([0-9]*\.[0-9]*\).*/\1/')"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    grep -E '^\s*k8s\.io/[^ ]+ => \./staging/' "$gomod" | awk -v v="$staging" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > "$dir/go.mod"
  echo "package tools" > "$dir/tools.go"
  sed -i '1i //go:build tools' "$dir/tools.go"
  printf '\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"\n\t_ "k8s.io/kubernetes/cmd/kube-scheduler"\n\t_ "k8s.io/kubernetes/cmd/kube-proxy"\n\t_ "k8s.io/kubernetes/cmd/kubectl"\n)\n' >> "$dir/tools.go"
  log "resolving module graph ($(grep -c '=>' "$dir/go.mod") staging modules pinned to $staging)"
  (cd "$dir" && go mod tidy >&2)
  touch "$dir/.complete"
  echo "$dir"
}

build_k8s() {
  local name="$1"
  [ -x "$BIN/$name" ] && return 0
  local dir
  dir=$(k8s_wrapper)
  log "building $name $K8S_VERSION (first time takes several minutes)"
  local start=$SECONDS
  # -mod=mod: a component added after the wrapper was resolved (kubectl) may
  # need go.sum lines the first resolution did not write.
  (cd "$dir" && with_progress "$name" go build -mod=mod -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)" -o "$BIN/$name.tmp" "k8s.io/kubernetes/cmd/$name" && mv "$BIN/$name.tmp" "$BIN/$name")
  log "$name ready in $((SECONDS - start))s: $BIN/$name"
}

for c in "${components[@]}"; do
  case "$c" in
    etcd) build_etcd ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kube-proxy|kubectl) build_k8s "$c" ;;
    *) echo "build_binaries: unknown component '$c' (known: etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl)" >&2; exit 2 ;;
  esac
done
echo "$BIN"
