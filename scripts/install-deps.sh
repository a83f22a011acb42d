#!/usr/bin/env bash
# Installs what building and testing Weft needs and a fresh Debian machine may lack:
# fuse3 (/dev/fuse tools), attr (getfattr/setfattr), python3 (the POSIX suite's
# unprivileged helpers). Safe to run again; does nothing when all is present.
set -euo pipefail
need=()
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v getfattr >/dev/null || need+=(attr)
[ -x /usr/bin/python3 ] || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: please install: ${need[*]} (needs root)" >&2
    exit 1
  fi
  echo "install-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -e /dev/fuse ]; then
  modprobe fuse 2>/dev/null || true
  [ -e /dev/fuse ] || { echo "install-deps: /dev/fuse is missing and modprobe fuse failed" >&2; exit 1; }
fi
