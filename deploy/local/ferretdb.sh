#!/usr/bin/env bash
# Build (once, cached) and run a local FerretDB 1.x server (MongoDB wire
# protocol, SQLite backend) on loopback only, for development and tests.
#
#   ferretdb.sh build                  -> prints path of the cached binary
#   ferretdb.sh version                -> prints the version the build reports (patches named)
#   ferretdb.sh start DATA_DIR PORT    -> prints mongodb://127.0.0.1:PORT/
#   ferretdb.sh stop DATA_DIR
set -euo pipefail

VERSION=v1.24.2
MODULE=github.com/FerretDB/FerretDB
# Local patches applied at build, in order (see each file's header for why). The cache
# directory names them all, so a binary built without one of them is never reused.
PATCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ferretdb-patches"
PATCHES=(01-id-index 02-write-lock 03-id-pushdown 04-int-id-pushdown)
CACHE_DIR="${SWITCHBOARD_CACHE:-$HOME/.cache/switchboard}/ferretdb-$VERSION-$(IFS=+; echo "${PATCHES[*]}")"
# What the server reports as `ferretdbVersion` (buildInfo): the harness refuses to reuse a
# server on the local port that reports anything else (an older build, stock FerretDB).
REPORTED_VERSION="$VERSION+switchboard.$(IFS=.; echo "${PATCHES[*]}")"
BIN="$CACHE_DIR/ferretdb"

die() { echo "ferretdb.sh: $*" >&2; exit 1; }

build() {
    if [[ -x "$BIN" ]]; then echo "$BIN"; return; fi
    command -v go >/dev/null || die "go is required to build FerretDB"
    local src tmp
    src=$(go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -n "$src" ]] || die "go mod download did not return a module dir"
    tmp=$(mktemp -d)
    trap "rm -rf '$tmp'" EXIT  # build runs at top level or in $(...), so EXIT is scoped right
    cp -r "$src" "$tmp/src" && chmod -R u+w "$tmp/src"
    # A plain `go build` panics at startup without this file.
    echo "$REPORTED_VERSION" > "$tmp/src/build/version/version.txt"
    local name
    for name in "${PATCHES[@]}"; do
        patch -d "$tmp/src" -p1 --forward --batch --quiet <"$PATCH_DIR/$name.patch" ||
            die "could not apply $PATCH_DIR/$name.patch to FerretDB $VERSION"
    done
    mkdir -p "$CACHE_DIR"
    # SQLite backend is modernc.org/sqlite (pure Go), so no cgo is needed.
    # Fall back to the Go version FerretDB's go.mod names if the local one fails.
    (cd "$tmp/src" && CGO_ENABLED=0 go build -trimpath -o "$BIN.tmp" ./cmd/ferretdb) ||
        (cd "$tmp/src" && CGO_ENABLED=0 GOTOOLCHAIN=go1.24.3 go build -trimpath -o "$BIN.tmp" ./cmd/ferretdb) ||
        die "build failed"
    mv "$BIN.tmp" "$BIN"
    echo "$BIN"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
    local dir=${1:?usage: ferretdb.sh start DATA_DIR PORT} port=${2:?usage: ferretdb.sh start DATA_DIR PORT}
    local bin pid
    bin=$(build)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ -f "$dir/ferretdb.pid" ]] && kill -0 "$(cat "$dir/ferretdb.pid")" 2>/dev/null; then
        die "already running (pid $(cat "$dir/ferretdb.pid"))"
    fi
    port_open "$port" && die "127.0.0.1:$port is already in use"
    # A database dropped or created while the server was killed can leave a WAL without its
    # database file, or a database file with no table (one page, nothing in a WAL); FerretDB
    # then refuses to start ("no such table: _ferretdb_collections"). Neither holds data.
    local file
    for file in "$dir"/*.sqlite-wal "$dir"/*.sqlite-shm; do
        [[ -e "$file" && ! -e "${file%-*}" ]] && rm -f "$file"
    done
    for file in "$dir"/*.sqlite; do
        [[ -e "$file" && ! -e "$file-wal" && $(stat -c %s "$file") -le 4096 ]] && rm -f "$file"
    done
    # Loopback only, no outbound traffic: telemetry disabled (its URL also points
    # at a dead loopback port as a safety net), no OTLP tracing, and the debug
    # HTTP listener is off ("-" disables it in FerretDB 1.24).
    nohup "$bin" \
        --handler=sqlite \
        --sqlite-url="file:$dir/" \
        --state-dir="$dir" \
        --listen-addr="127.0.0.1:$port" \
        --debug-addr=- \
        --telemetry=disable \
        --test-telemetry-url=http://127.0.0.1:9/ \
        --otel-traces-url=- \
        >>"$dir/ferretdb.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" > "$dir/ferretdb.pid"
    for _ in $(seq 1 60); do
        if port_open "$port"; then
            echo "mongodb://127.0.0.1:$port/"
            return
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    tail -n 30 "$dir/ferretdb.log" >&2
    kill "$pid" 2>/dev/null || true
    rm -f "$dir/ferretdb.pid"
    die "FerretDB did not come up on 127.0.0.1:$port"
}

stop() {
    local dir=${1:?usage: ferretdb.sh stop DATA_DIR} pid
    [[ -f "$dir/ferretdb.pid" ]] || return 0
    pid=$(cat "$dir/ferretdb.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    fi
    rm -f "$dir/ferretdb.pid"
}

case "${1:-}" in
    build) build ;;
    version) echo "$REPORTED_VERSION" ;;
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    *) die "usage: ferretdb.sh build | version | start DATA_DIR PORT | stop DATA_DIR" ;;
esac
