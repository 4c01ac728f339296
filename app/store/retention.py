"""Which memories retention removes: the SQL both backends run to find them (deleting reuses `delete`).

Each query returns at most a batch of (scope, memory id), so a pass is bounded; deleting an id
another instance removed first is a no-op, so several instances may run passes at once. A scope
with its own limits (the scope_retention table) is left out of the global rules and run alone."""

from __future__ import annotations

SCOPE_RETENTION_TABLE = (
    "CREATE TABLE scope_retention (user_id TEXT PRIMARY KEY, max_age_days {real}, max_per_scope BIGINT, "
    "updated_at {real} NOT NULL)"
)
# A scope's own limits: NULL follows the config's, 0 is no limit for this scope.
ScopeLimits = tuple[float | None, int | None]
GLOBAL = "user_id NOT IN (SELECT user_id FROM scope_retention)"
ONE_SCOPE = "user_id = {2}"
# Older than a cut-off, oldest first. Parameters: the cut-off (epoch seconds), the batch size, [the scope].
EXPIRED_SQL = "SELECT user_id, id FROM memories WHERE created_at < {0} AND {where} ORDER BY created_at LIMIT {1}"
# Beyond a scope's newest N. Parameters: N, the batch size, [the scope]. ({order}: the backend's insertion order.)
OVER_QUOTA_SQL = (
    "SELECT user_id, id FROM (SELECT user_id, id, row_number() OVER "
    "(PARTITION BY user_id ORDER BY created_at DESC, {order} DESC) AS newer FROM memories WHERE {where}) ranked "
    "WHERE newer > {0} LIMIT {1}"
)
SET_SQL = (
    "INSERT INTO scope_retention VALUES ({0}, {1}, {2}, {3}) ON CONFLICT (user_id) DO UPDATE SET "
    "max_age_days = excluded.max_age_days, max_per_scope = excluded.max_per_scope, updated_at = excluded.updated_at"
)
