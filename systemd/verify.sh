#!/usr/bin/env bash
# Checks the unit files with systemd-analyze verify. ExecStart must name an existing binary,
# so the units are verified as copies pointing at the given build of retouchd.
set -euo pipefail
bin=$(realpath "${1:-target/debug/retouchd}")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s|/usr/local/bin/retouchd|$bin|" "$here/retouchd.service" > "$work/retouchd.service"
# --man=no: the man page is installed by the package (.ci/package verifies with it).
systemd-analyze verify --man=no "$work/retouchd.service"
sed "s|%h/.cargo/bin/retouchd|$bin|" "$here/retouchd-user.service" > "$work/retouchd-user.service"
XDG_RUNTIME_DIR="$work" systemd-analyze --user verify "$work/retouchd-user.service"
echo "unit files verify"
