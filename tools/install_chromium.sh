#!/usr/bin/env bash
# Debian/Ubuntu's Chromium for prod9's browser tests (the viewers in JupyterLab, the offline docs).
# Works as root without sudo (a plain Debian container) and as a user with sudo.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then echo "chromium is installed: $(command -v chromium)"; exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_chromium.sh: no apt-get here (not Debian/Ubuntu); install Chromium yourself and set PROD9_CHROMIUM=/path/to/chromium" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then echo "install_chromium.sh: not root and no sudo; run it as root" >&2; exit 1; fi
  SUDO="sudo"
fi
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
echo "chromium is installed: $(command -v chromium)"
