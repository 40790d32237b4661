#!/usr/bin/env bash
# Installs what wiretrace needs on a fresh Debian machine, as root. Idempotent: skips what is
# already there.
#   scripts/setup.sh          everything for building, running and testing
#   scripts/setup.sh --run    only what `wiretrace up` needs (nothing beyond cargo today)
#   scripts/setup.sh --lab    only what the Bookinfo lab needs (`wiretrace demo bookinfo`)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-all}
[ "$mode" = "--run" ] && exit 0

log() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }
sudo_if() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

LLVM=22
apt_pkgs=()
command -v curl >/dev/null || apt_pkgs+=(curl)
command -v ip >/dev/null || apt_pkgs+=(iproute2)
# The Bookinfo lab (lab/bookinfo): its apps' runtimes and the sidecar proxy.
command -v ruby >/dev/null || apt_pkgs+=(ruby)
command -v nginx >/dev/null || apt_pkgs+=(nginx-light)
command -v node >/dev/null || apt_pkgs+=(nodejs)
command -v javac >/dev/null || apt_pkgs+=(default-jdk-headless) # `java X.java` needs the compiler
if [ "$mode" != --lab ]; then
    command -v psql >/dev/null || apt_pkgs+=(postgresql-client)
    command -v openssl >/dev/null || apt_pkgs+=(openssl)
    # Postgres clients the SQL server is tested against: pgJDBC, and Go with pgx (Grafana's
    # driver family), both from Debian (GOPATH mode: no module proxy needed).
    [ -e /usr/share/java/postgresql.jar ] || apt_pkgs+=(libpostgresql-jdbc-java)
    command -v go >/dev/null || apt_pkgs+=(golang-go)
    [ -d /usr/share/gocode/src/github.com/jackc/pgx ] || apt_pkgs+=(golang-github-jackc-pgx-v4-dev)
    [ -x /usr/lib/llvm-$LLVM/bin/llvm-config ] || apt_pkgs+=(llvm-$LLVM-dev)
fi
if [ ${#apt_pkgs[@]} -gt 0 ]; then
    log "apt-get install ${apt_pkgs[*]}"
    sudo_if apt-get update -qq
    sudo_if env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
fi
[ "$mode" = --lab ] && exit 0

# The eBPF toolchain: nightly rust-src (build-std for bpfel-unknown-none) and bpf-linker built
# against Debian's LLVM (bpf-linker's default LLVM is newer than Debian's).
# Never update an installed nightly: its LLVM must not be newer than bpf-linker's.
if ! rustup toolchain list | grep -q '^nightly'; then
    log "rustup: nightly (minimal) + rust-src"
    rustup toolchain install nightly --profile minimal --component rust-src
elif ! rustup component list --toolchain nightly --installed | grep -q rust-src; then
    log "rustup: rust-src for the installed nightly"
    rustup component add rust-src --toolchain nightly
fi
if ! command -v bpf-linker >/dev/null; then
    log "cargo install bpf-linker (LLVM $LLVM)"
    PATH=/usr/lib/llvm-$LLVM/bin:$PATH cargo install bpf-linker --locked --quiet \
        --no-default-features --features llvm-$LLVM
fi

# Python with pyarrow (reads the Parquet files independently) and the Postgres drivers the
# SQL server is tested against: psycopg 3, psycopg2, asyncpg.
if [ ! -x .venv/bin/python3 ] || ! .venv/bin/python3 -c "import pyarrow, psycopg, psycopg2, asyncpg" 2>/dev/null; then
    log "python venv with pyarrow, psycopg, psycopg2, asyncpg (.venv)"
    [ -x .venv/bin/python3 ] || python3 -m venv .venv 2>/dev/null || {
        sudo_if apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        python3 -m venv .venv
    }
    .venv/bin/pip install --quiet --disable-pip-version-check pyarrow "psycopg[binary]" \
        psycopg2-binary asyncpg
fi
# node-postgres, pinned by tests/e2e/clients/package-lock.json.
if [ ! -d tests/e2e/clients/node_modules/pg ]; then
    log "npm ci (node-postgres for the client tests)"
    (cd tests/e2e/clients && npm ci --no-audit --no-fund --silent)
fi
log "ready"
