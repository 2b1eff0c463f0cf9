#!/usr/bin/env bash
# Builds the Debian package: target/debian/retouchd_<version>_<arch>.deb.
# Needs cargo-deb (`cargo install cargo-deb --locked`). Usage: packaging/deb/build.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release --locked
assets=target/deb-assets
rm -rf "$assets" && mkdir -p "$assets"
bin=target/release/retouchd
# The man page and shell completions, generated from the same definition as --help.
"$bin" man | gzip -9n > "$assets/retouchd.1.gz"
"$bin" completions bash > "$assets/retouchd.bash"
"$bin" completions zsh > "$assets/_retouchd"
"$bin" completions fish > "$assets/retouchd.fish"
# The hardened unit, pointing at the packaged binary.
sed -e 's|/usr/local/bin/retouchd|/usr/bin/retouchd|' \
    -e '/^# retouchd as a system service. Install:/,/^#   systemctl daemon-reload/c\
# retouchd as a system service, installed by the Debian package. Configure it with\
# `sudo retouchd init` (which also lists your folders in a drop-in, as ProtectSystem=strict\
# needs), then `sudo systemctl enable --now retouchd`.' \
    systemd/retouchd.service > "$assets/retouchd.service"
gzip -9n < README.md > "$assets/README.md.gz"
gzip -9n < config.example.toml > "$assets/config.example.toml.gz"
gzip -9n < docs/plugins.md > "$assets/plugins.md.gz"
cargo deb --no-build --locked "$@"
