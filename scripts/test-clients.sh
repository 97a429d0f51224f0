#!/usr/bin/env bash
# Installs the newest releases of the popular Kafka clients for the test
# suite, beside Debian's (kcat, python3-confluent-kafka): confluent-kafka,
# kafka-python and aiokafka in a virtual environment, kafkajs in a local npm
# folder. Everything goes under .test-clients/ in the workspace (gitignored);
# broker/tests/current_clients.rs uses it. Run again to pick up new releases.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.test-clients
mkdir -p "$dir/node"
if [ ! -x "$dir/venv/bin/python" ]; then
    python3 -m venv "$dir/venv"
fi
"$dir/venv/bin/pip" install -q --upgrade pip >/dev/null
"$dir/venv/bin/pip" install -q --upgrade confluent-kafka kafka-python aiokafka
(cd "$dir/node" && { [ -f package.json ] || echo '{"name":"rill-test-clients","private":true}' > package.json; } \
    && npm install --silent --no-audit --no-fund kafkajs@latest >/dev/null)
echo "test clients:"
"$dir/venv/bin/python" - <<'PY'
import confluent_kafka, kafka, aiokafka
print(f"  confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})")
print(f"  kafka-python {kafka.__version__}")
print(f"  aiokafka {aiokafka.__version__}")
PY
echo "  kafkajs $(node -p "require('./$dir/node/node_modules/kafkajs/package.json').version")"
