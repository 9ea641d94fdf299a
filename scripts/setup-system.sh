#!/usr/bin/env bash
# Install the Debian packages interpbench uses, where this machine allows it (root + apt):
#   openclipart-png, dataset-fashion-mnist  real image sets of the default benchmark
#   chromium, chromium-driver              the browser test of the HTML report
# Anything already installed is left alone; without root or apt it says what to install.
set -u
want="openclipart-png dataset-fashion-mnist chromium chromium-driver"
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "interpbench: optional system packages missing:$missing"
  echo "  install them with: sudo apt-get install -y$missing   (data sets and the report's browser test skip without them)"
  exit 0
fi
echo "interpbench: installing$missing with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null 2>&1 || true
apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1 || \
  echo "interpbench: apt-get could not install some of:$missing (continuing; dependent tests and tasks skip)"
exit 0
