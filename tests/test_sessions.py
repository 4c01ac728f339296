"""Dashboard sessions: a bounded table per principal, where no principal's log-ins end another's sessions."""

from __future__ import annotations

import time

from app.auth import Principal
from app.sessions import SESSIONS_PER_PRINCIPAL, Sessions

ADMIN = Principal("key#0", admin=True)
ALICE = Principal("key#1", user_id="alice")


def test_a_thousand_log_ins_of_one_key_keep_the_others_session() -> None:
    sessions = Sessions()
    admin = sessions.create(ADMIN)
    alice = [sessions.create(ALICE) for _ in range(1001)]
    assert sessions.get(admin) is not None and sessions.get(admin).principal == ADMIN  # type: ignore[union-attr]
    live = [t for t in alice if sessions.get(t) is not None]
    assert live == alice[-SESSIONS_PER_PRINCIPAL:]  # alice's own oldest went first
    assert len(sessions._live) == SESSIONS_PER_PRINCIPAL + 1


def test_log_out_and_expiry_free_the_principals_place(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sessions = Sessions()
    first = [sessions.create(ALICE) for _ in range(SESSIONS_PER_PRINCIPAL)]
    sessions.drop(first[0])
    later = sessions.create(ALICE)
    assert all(sessions.get(t) is not None for t in first[1:])  # the log-out made room: nothing else ended
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 13 * 3600)
    assert all(sessions.get(t) is None for t in [*first, later])
    assert sessions._live == {} and sessions._tokens_of == {}
