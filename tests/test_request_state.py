"""app/request_state.py: request ids and the operator rule."""

from __future__ import annotations

from app.auth import ANONYMOUS, Principal
from app.request_state import RequestState, request_id


def test_a_sane_client_request_id_is_kept() -> None:
    assert request_id({"x-request-id": "abc-123_x.y:z"}) == "abc-123_x.y:z"


def test_missing_long_or_odd_request_ids_are_replaced() -> None:
    for headers in ({}, {"x-request-id": "a" * 129}, {"x-request-id": "has space"}, {"x-request-id": "a\r\nb"}):
        made = request_id(headers)
        assert made.startswith("req_") and len(made) == 36


def test_operators_see_internals_and_others_do_not() -> None:
    assert RequestState("r", False, principal=ANONYMOUS).sees_internals
    assert RequestState("r", False, principal=Principal("key#1", admin=True)).sees_internals
    assert not RequestState("r", False, principal=Principal("key#0", user_id="alice")).sees_internals
    assert not RequestState("r", False).sees_internals  # nobody authenticated
