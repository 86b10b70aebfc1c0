#!/usr/bin/env bash
# The main job, end to end: plan, apply, plan again, on a throwaway Airflow-shaped SQLite database;
# then an edit made outside dconn, as the nightly drift check reports it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dconn=${DCONN:-dconn}
python=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/dconn-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

export DCONN_FERNET_KEY
DCONN_FERNET_KEY=$("$python" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')
export DCONN_DB_URL="sqlite:///$work/airflow.db"
export DEMO_WAREHOUSE_PASSWORD=demo-warehouse-password
export DEMO_ORDERS_PASSWORD=rotated-orders-password
export DEMO_SLACK_TOKEN=demo-slack-token
"$python" "$here/build_demo_db.py" "$work/airflow.db" "$DCONN_FERNET_KEY"
cd "$work"

step() { printf '\n==> %s\n\n' "$*"; }

step "The database: an Airflow table with 3 rows of legacy_s3 (1.10 duplicates), a drifted host, an undeclared connection"
"$python" - "$work/airflow.db" <<'PY'
import sqlite3, sys
for row in sqlite3.connect(sys.argv[1]).execute("SELECT id, conn_id, conn_type, host FROM connection ORDER BY id"):
    print("  row %-3s %-16s %-9s %s" % row)
PY

step "dconn plan -c connections.toml"
"$dconn" plan -c "$here/connections.toml" --no-color

step "dconn apply -c connections.toml --auto-approve"
"$dconn" apply -c "$here/connections.toml" --auto-approve --no-color

step "dconn plan -c connections.toml --detailed-exitcode   (again: nothing left to do, exit 0)"
"$dconn" plan -c "$here/connections.toml" --detailed-exitcode --no-color
echo "exit code: $?"

step "Someone edits the warehouse host in the Airflow UI; the nightly drift check notices (exit 2)"
"$python" - "$work/airflow.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
with db:
    db.execute("UPDATE connection SET host = 'edited-in-the-ui' WHERE conn_id = 'warehouse'")
PY
code=0
"$dconn" plan -c "$here/connections.toml" --detailed-exitcode --no-color || code=$?
echo "exit code: $code"

step "The state file dconn keeps (secrets only as keyed digests):"
head -c 600 .dconn/state.json; echo " ..."
