#!/usr/bin/env bash
# Checks the operations kit in deploy/ without a container engine:
# - the compose file against the Compose specification, with the example secrets
#   (docker-compose's schema-aware `config`; nothing is pulled or built);
# - Prometheus' configuration and alert rules (`promtool check`);
# - the alert rules' unit tests (`promtool test rules`: each alert fires in one case and not in
#   another).
# The dashboard's metric names and a real Prometheus scraping live instances are checked by
# the integration tests (tests/api/deploy.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "--> docker-compose config (deploy/compose.yaml)"
docker-compose --env-file deploy/.env.example -f deploy/compose.yaml config --quiet
echo "    valid"

echo "--> promtool check config, check rules, test rules"
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts.test.yml
