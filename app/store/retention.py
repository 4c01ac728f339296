"""Which memories retention removes: the SQL both backends run to find them (deleting reuses `delete`).

Each query returns at most a batch of (scope, memory id), so a pass is bounded; deleting an id
another instance removed first is a no-op, so several instances may run passes at once."""

from __future__ import annotations

# Older than a cut-off, oldest first. Parameters: the cut-off (epoch seconds), the batch size.
EXPIRED_SQL = "SELECT user_id, id FROM memories WHERE created_at < {0} ORDER BY created_at LIMIT {1}"
# Beyond a scope's newest N. Parameters: N, the batch size. ({order} is the backend's insertion order.)
OVER_QUOTA_SQL = (
    "SELECT user_id, id FROM (SELECT user_id, id, row_number() OVER "
    "(PARTITION BY user_id ORDER BY created_at DESC, {order} DESC) AS newer FROM memories) ranked "
    "WHERE newer > {0} LIMIT {1}"
)
