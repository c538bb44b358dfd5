#!/bin/sh
# Install the Debian packages lbml needs, once. Safe to re-run; quiet when all are present.
set -e
PKGS="fonts-dejavu-core"
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != "0" ]; then SUDO=sudo; else SUDO=""; fi
echo "installing system packages:$missing"
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
