"""Unit tests of the routing table: matching order, path parameters, methods, the fallback."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.main import INFERENCE_PATHS, routing_table
from app.routing import Access, RoutingTable, route


async def handler(request: Request) -> Response:
    return Response()


def table() -> RoutingTable:
    return RoutingTable(
        [
            route("items", "/items", "GET POST", Access.CLIENT, handler),
            route("search", "/items/search", "GET", Access.CLIENT, handler),
            route("item", "/items/{item_id}", "GET DELETE", Access.CLIENT, handler),
            route("infer", "/v1/models", "*", Access.CLIENT, handler, prefix=True),
            route("open", "/health", "GET", Access.OPEN, handler),
        ],
        fallback=route("rest", "/", "*", Access.ADMIN, handler),
    )


def test_exact_paths_win_over_templates() -> None:
    m = table().match("GET", "/items/search")
    assert m.route.name == "search" and m.params == {} and m.allowed


def test_templates_capture_one_segment() -> None:
    m = table().match("DELETE", "/items/mem_1")
    assert m.route.name == "item" and m.params == {"item_id": "mem_1"}
    assert table().match("GET", "/items/a/b").route.name == "rest"


def test_wrong_method_is_not_allowed_and_lists_the_right_ones() -> None:
    t = table()
    m = t.match("PUT", "/items")
    assert m.route.name == "items" and not m.allowed
    assert t.allowed_methods("/items") == ["GET", "POST"]


def test_head_is_served_by_get_routes() -> None:
    assert table().match("HEAD", "/health").allowed


def test_prefixes_match_the_path_and_below_but_not_lookalikes() -> None:
    t = table()
    assert t.match("POST", "/v1/models").route.name == "infer"
    assert t.match("GET", "/v1/models/gpt/x").route.name == "infer"
    assert t.match("GET", "/v1/modelsX").route.name == "rest"


def test_the_proxys_table_sends_management_paths_to_admins_only() -> None:
    t = routing_table()
    for path in ("/key/generate", "/model/info", "/routes", "/config/update", "/spend/logs", "/user/new"):
        assert t.match("POST", path).route.access is Access.ADMIN, path
    for path in INFERENCE_PATHS:
        assert t.match("POST", path + "/x").route.access is Access.CLIENT, path
    assert t.match("POST", "/v1/chat/completions").route.name == "chat"
    assert t.match("GET", "/v1/memories/mem_1").params == {"memory_id": "mem_1"}
    assert t.match("GET", "/v1/memories/a/b").route.name == "memories-unknown"
    assert t.match("GET", "/health/liveliness").route.access is Access.OPEN
