#!/bin/sh
# Installs Debian's Chromium for the dashboard's browser tests, unless a Chromium is there
# already (CHROMIUM may name one). Needs root or password-less sudo for apt-get.
set -e
for candidate in "$CHROMIUM" /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
        exit 0
    fi
done
if [ "$(id -u)" = 0 ]; then
    run=""
elif sudo -n true 2>/dev/null; then
    run="sudo -n"
else
    echo "The browser tests need Chromium: run 'apt-get install chromium' as root, or set CHROMIUM." >&2
    exit 1
fi
echo "installing Debian's chromium package for the browser tests"
$run apt-get update -qq
DEBIAN_FRONTEND=noninteractive $run apt-get install -y -qq --no-install-recommends chromium > /dev/null
