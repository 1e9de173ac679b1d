#!/usr/bin/env bash
# .ci/dbt/run.sh DSN SCHEMA [dbt arguments...]
# Runs Fivetran's dbt_jira through the vendored package set's own runner (../shared/dbt/run.sh,
# or $JIRA_SYNC_DBT_DIR/run.sh) on a copy of that set. fivetran_utils 0.4.10, the release
# vendored beside dbt_jira 1.10.1, lacks three macros the package calls (union_connections,
# apply_source_relation, partition_by_source_relation); where the vendored release lacks them,
# the copy gets their single-connection forms from fivetran_utils_compat.sql, saying so. dbt_jira
# itself is copied unchanged. Exits with dbt's status (2 when no package set is found).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
FROM=${JIRA_SYNC_DBT_DIR:-$HERE/../../../shared/dbt}
[[ -f $FROM/run.sh ]] || { echo "no dbt package set at $FROM (set JIRA_SYNC_DBT_DIR)" >&2; exit 2; }
COPY=$(mktemp -d -t jira-sync-dbt.XXXXXX)
trap 'rm -rf "$COPY"' EXIT
cp -R "$FROM/." "$COPY"
UTILS=$COPY/packages/fivetran_utils/macros
if ! grep -rqs "macro union_connections(" "$UTILS"; then
  echo "the vendored fivetran_utils lacks union_connections, apply_source_relation and" \
       "partition_by_source_relation, which dbt_jira calls: adding their single-connection forms" \
       "(.ci/dbt/fivetran_utils_compat.sql) to a copy" >&2
  cp "$HERE/fivetran_utils_compat.sql" "$UTILS/zz_jira_sync_compat.sql"
fi
bash "$COPY/run.sh" "$@"
