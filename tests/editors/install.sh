#!/usr/bin/env bash
# Real editor clients for the language-server tests.
#
#   tests/editors/install.sh neovim      apt-get install neovim (Debian's 0.7.2) when missing
#   tests/editors/install.sh npm DIR     npm install vscode-tmgrammar-test into DIR (a cache)
#
# `neovim` needs root; both are idempotent and print where the tool is.
set -euo pipefail

log() { printf 'install.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "${1:-}" in
  neovim)
    if ! command -v nvim >/dev/null; then
      [[ $(id -u) -eq 0 ]] || die "installing neovim needs root"
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -q --no-install-recommends neovim >/dev/null \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends neovim >/dev/null; }
    fi
    command -v nvim
    ;;
  npm)
    dir="${2:?usage: install.sh npm DIR}"
    command -v npm >/dev/null || die "npm is not installed"
    mkdir -p "$dir"
    if [[ ! -x "$dir/node_modules/.bin/vscode-tmgrammar-test" ]]; then
      npm install --prefix "$dir" --no-audit --no-fund --silent vscode-tmgrammar-test@0.1.3 >&2
    fi
    echo "$dir/node_modules/.bin/vscode-tmgrammar-test"
    ;;
  *)
    die "usage: install.sh neovim | npm DIR"
    ;;
esac
