#!/usr/bin/env bash
# Installs what building and testing Weft needs and a fresh Debian machine may lack:
# fuse3 (/dev/fuse tools), attr (getfattr/setfattr), acl (setfacl/getfacl), util-linux
# (setpriv, to run test steps as an unprivileged user), iproute2 (ss -K, to cut a test's TCP
# connection), python3 (the POSIX suite's
# unprivileged helpers), python3-dev (libpython3 and headers, which crates/python links
# through PyO3; .cargo/config.toml points PyO3 at /usr/bin/python3). Safe to run again;
# does nothing when all is present.
set -euo pipefail
need=()
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v getfattr >/dev/null || need+=(attr)
command -v setfacl >/dev/null || need+=(acl)
command -v setpriv >/dev/null || need+=(util-linux)
command -v ss >/dev/null || need+=(iproute2)
[ -x /usr/bin/python3 ] || need+=(python3)
[ -x /usr/bin/python3-config ] && /usr/bin/python3-config --ldflags --embed >/dev/null 2>&1 \
  || need+=(python3-dev)
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
