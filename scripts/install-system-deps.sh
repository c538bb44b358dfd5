#!/bin/sh
# Install the Debian packages one make target needs, once. Safe to re-run; quiet when all are present.
#   install-system-deps.sh demo   fonts for the report plots; optional (skipped with a note without root)
#   install-system-deps.sh test   what the test suite starts for real: the Rust client's crates and
#                                 toolchain, PostgreSQL (search storage), Chromium (dashboard tests)
set -e
TARGET="${1:-test}"
PKGS="fonts-dejavu-core"
REQUIRED=0
if [ "$TARGET" = "test" ]; then
    REQUIRED=1
    # The reference Rust client (clients/rust) builds offline against Debian's packaged crates.
    PKGS="$PKGS libzmq3-dev librust-zmq-dev librust-serde-dev librust-serde-derive-dev librust-serde-json-dev librust-rmp-serde-dev"
    # A Rust toolchain: keep one that is already there (e.g. rustup's), else take Debian's.
    if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
        PKGS="$PKGS cargo"
    fi
    # Servers and a browser the tests start themselves (initdb/pg_ctl in a temp dir; headless Chromium).
    if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        PKGS="$PKGS postgresql"
    fi
    PKGS="$PKGS chromium"
fi
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != "0" ]; then
    if [ "$REQUIRED" = "0" ]; then
        echo "note: system packages$missing not installed (no root); plots use matplotlib's own fonts"
        exit 0
    fi
    SUDO=sudo
else
    SUDO=""
fi
echo "installing system packages for '$TARGET':$missing"
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
