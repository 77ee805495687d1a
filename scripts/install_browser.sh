#!/usr/bin/env bash
# Headless Chromium and its WebDriver from Debian, for the live-page tests (tests/kpi_api/test_live_page.py).
# Installed only when missing and only where apt-get can run as root (CI, the dev container);
# elsewhere it says what to install and the browser tests report themselves skipped.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing chromium + chromium-driver (Debian packages) for the live-page tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
else
  echo "note: install chromium and chromium-driver (e.g. apt-get install chromium chromium-driver) to run the live-page browser tests"
fi
