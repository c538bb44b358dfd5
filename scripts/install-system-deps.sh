#!/bin/sh
# Install the Debian packages lbml needs, once. Safe to re-run; quiet when all are present.
set -e
PKGS="fonts-dejavu-core"
# The reference Rust client (clients/rust) builds offline against Debian's packaged crates.
PKGS="$PKGS libzmq3-dev librust-zmq-dev librust-serde-dev librust-serde-derive-dev librust-serde-json-dev librust-rmp-serde-dev"
# A Rust toolchain: keep one that is already there (e.g. rustup's), else take Debian's.
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    PKGS="$PKGS cargo"
fi
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != "0" ]; then SUDO=sudo; else SUDO=""; fi
echo "installing system packages:$missing"
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
