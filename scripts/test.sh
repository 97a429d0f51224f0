#!/usr/bin/env bash
# The README's test command: installs what the tests need on a fresh
# Debian/Ubuntu machine, then runs every test. `.ci/run` runs exactly this.
#
# Installs (skipped when already present): kcat, python3-confluent-kafka
# (Debian bookworm's librdkafka 2.0.2 and confluent-kafka 1.7), e2fsprogs and
# mount (the disk-full tests loop-mount a small ext4 image), prometheus (its
# promtool and server, for the metrics tests), Node.js/npm if
# missing; then the newest confluent-kafka, kafka-python, aiokafka (pip, in a
# venv) and kafkajs (npm) under .test-clients/ (scripts/test-clients.sh).
# Installing Debian packages needs root or sudo; so does the loop mount.
# Extra arguments go to `cargo test`, e.g. `bash scripts/test.sh -p rill-storage`.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
need=()
command -v kcat >/dev/null 2>&1 || need+=(kcat)
/usr/bin/python3 -c 'import confluent_kafka' 2>/dev/null || need+=(python3-confluent-kafka python3)
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v losetup >/dev/null 2>&1 || need+=(mount util-linux)
[ -e /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
# Node.js may come from elsewhere (NodeSource bundles npm); add Debian's only if missing.
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
# The metrics tests: promtool checks the exposition, a real Prometheus scrapes it.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "scripts/test.sh: missing ${need[*]} and no apt-get to install them" >&2
        exit 1
    fi
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    echo "installing: ${need[*]}"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The package starts a Prometheus of its own where systemd runs; the
    # tests start theirs.
    if [[ " ${need[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1; then
        $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
fi

# The newest releases of confluent-kafka, kafka-python, aiokafka and kafkajs.
bash scripts/test-clients.sh

# glommio locks memory for io_uring; raise the limit where we may.
ulimit -l unlimited 2>/dev/null || ulimit -l "$(ulimit -H -l)" 2>/dev/null || true
echo "memlock: $(ulimit -l), io_uring_disabled: $(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo n/a)"
cargo --version

cargo test --workspace "$@"
