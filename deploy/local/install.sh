#!/usr/bin/env bash
# Install what `make run` / `make test` need on a Debian machine, skipping what is there:
# uv (from PyPI), RabbitMQ and dovecot (Debian), FerretDB (built from the Go module proxy),
# and the validators for the compose and Prometheus files. Idempotent and quick when done.
set -euo pipefail

need_apt=()
command -v rabbitmq-server >/dev/null || need_apt+=(rabbitmq-server)
command -v dovecot >/dev/null || need_apt+=(dovecot-imapd)
command -v openssl >/dev/null || need_apt+=(openssl)  # test certificates (IMAP and relay TLS)
command -v patch >/dev/null || need_apt+=(patch)  # FerretDB local patches (deploy/local/ferretdb-patches)
command -v npm >/dev/null || need_apt+=(nodejs npm)     # builds the desktop app (web/)
command -v chromium >/dev/null || need_apt+=(chromium)  # the browser tests drive it (never downloaded)
if [[ "${1:-}" == "--ci" ]]; then
    command -v docker-compose >/dev/null || need_apt+=(docker-compose)
    command -v promtool >/dev/null || need_apt+=(prometheus)
fi
if ((${#need_apt[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install.sh: please install with apt-get: ${need_apt[*]}" >&2
        exit 1
    fi
    echo "install.sh: apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! command -v uv >/dev/null; then
    echo "install.sh: installing uv from PyPI"
    python3 -m pip install --quiet uv
fi

bash "$(dirname "$0")/ferretdb.sh" build >/dev/null
