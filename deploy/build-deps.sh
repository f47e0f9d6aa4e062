#!/usr/bin/env bash
# Installs what building consent-ledger needs beyond the Rust toolchain: RocksDB's build
# generates its bindings with libclang. Idempotent; installs with apt-get when run as root
# on Debian/Ubuntu, otherwise prints the exact command to run.
set -euo pipefail

have_libclang() {
  if [ -n "${LIBCLANG_PATH:-}" ] && compgen -G "$LIBCLANG_PATH/libclang*.so*" >/dev/null 2>&1; then
    return 0
  fi
  ldconfig -p 2>/dev/null | grep -q 'libclang\(-[0-9.]*\)\?\.so' && return 0
  # libclang-cpp (pulled in by other packages) is not what bindgen loads: look for
  # libclang.so or libclang-<version>.so only.
  compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null ||
    compgen -G '/usr/lib/llvm-*/lib/libclang-[0-9]*.so*' >/dev/null ||
    compgen -G '/usr/lib/*/libclang-[0-9]*.so*' >/dev/null ||
    compgen -G '/usr/lib/*/libclang.so*' >/dev/null
}

if have_libclang; then
  exit 0
fi

packages="libclang-dev"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "build-deps: installing $packages (needed by RocksDB's build)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $packages >/dev/null
  have_libclang || { echo "build-deps: libclang still not found after install" >&2; exit 1; }
else
  echo "build-deps: libclang is missing (RocksDB's build needs it). Install it with:" >&2
  echo "  sudo apt-get install -y $packages" >&2
  exit 1
fi
