#!/usr/bin/env bash
# The UI test (tests/ui) drives Debian's chromium, headless; Playwright never downloads a browser.
# Installs it when missing (apt, as root or through sudo).
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian chromium for the UI test (tests/ui)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
