#!/usr/bin/env bash
# Installs Rill on a dedicated server: the binary, a config, a system user,
# the data directory and the systemd unit. Run as root from a checkout:
#
#   sudo scripts/install.sh            # builds release, installs, enables (does not start)
#   sudo systemctl start rill
#
# Then: `rill tune check --dir /var/lib/rill` and `rill tune probe --dir /var/lib/rill`.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
here="$(cd "$(dirname "$0")/.." && pwd)"
data_dir="${RILL_DATA_DIR:-/var/lib/rill}"

(cd "$here" && cargo build --release --bin rill)
install -m 0755 "$here/target/release/rill" /usr/local/bin/rill

id rill >/dev/null 2>&1 || useradd --system --home-dir "$data_dir" --shell /usr/sbin/nologin rill
install -d -o rill -g rill -m 0750 "$data_dir"
install -d -m 0755 /etc/rill
if [ ! -f /etc/rill/rill.toml ]; then
    cat > /etc/rill/rill.toml <<TOML
# Rill broker settings; every \`rill broker --help\` flag works here with underscores.
data_dir = "$data_dir"
listen = "0.0.0.0:9092"
# advertised_listener = "broker1.example.com:9092"
node_id = 0
TOML
fi
install -m 0644 "$here/scripts/rill.service" /etc/systemd/system/rill.service
systemctl daemon-reload
systemctl enable rill.service
echo "installed: /usr/local/bin/rill, /etc/rill/rill.toml, $data_dir, rill.service (start with: systemctl start rill)"
