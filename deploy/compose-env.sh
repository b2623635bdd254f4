#!/bin/sh
# Writes fresh development secrets for deploy/compose.yaml into deploy/.env (or the file given).
# Never commit it. Starting over with new secrets needs new databases too
# (`docker compose -f deploy/compose.yaml down -v`): signing keys are sealed under the old KEKs.
set -eu
out="${1:-$(dirname "$0")/.env}"
if [ -e "$out" ]; then
  echo "$out exists: remove it (and the compose volumes) to start over" >&2
  exit 1
fi
b64() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }
hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
umask 077
{
  echo "PG_CONTROL_PASSWORD=$(hex 16)"
  echo "PG_EU_PASSWORD=$(hex 16)"
  echo "PG_US_PASSWORD=$(hex 16)"
  echo "MERIDIAN_EU_KEK=$(b64 32)"
  echo "MERIDIAN_US_KEK=$(b64 32)"
  echo "MERIDIAN_LOCATOR_PEPPER=$(b64 32)"
  echo "MERIDIAN_ADMIN_CLIENT_SECRET=$(hex 32)"
} >"$out"
echo "wrote $out (admin client: meridian-admin, secret: MERIDIAN_ADMIN_CLIENT_SECRET in it)"
