"""app/models.py: `name,beta1,beta2`, dated names and Supermemory detection."""

from __future__ import annotations

from app.config import ModelEntry
from app.models import ModelRoute, ModelTable

TABLE = ModelTable(
    (
        ModelEntry("claude-3-5-sonnet"),
        ModelEntry("claude-sonnet-4-20250514"),
        ModelEntry("gpt-4o", "https://api.openai.com/v1"),
        ModelEntry("foo"),
        ModelEntry("foo-20240101"),
        ModelEntry("sm-gpt", "https://api.supermemory.ai/v3/https://api.openai.com/v1"),
        ModelEntry("sm-claude-20250101", "https://api.supermemory.ai/v3/https://api.anthropic.com"),
        ModelEntry("lookalike", "https://supermemory.example.com/v1"),
    )
)


def test_plain_name() -> None:
    assert TABLE.route("gpt-4o") == ModelRoute("gpt-4o", (), False)


def test_beta_suffix_split() -> None:
    r = TABLE.route("claude-3-5-sonnet,beta1,beta2")
    assert r.model == "claude-3-5-sonnet"
    assert r.betas == ("beta1", "beta2")


def test_beta_suffix_whitespace_and_empties() -> None:
    r = TABLE.route("claude-3-5-sonnet, beta1 ,,beta2,")
    assert r == ModelRoute("claude-3-5-sonnet", ("beta1", "beta2"), False)


def test_dated_request_matches_undated_config_model() -> None:
    assert TABLE.route("claude-3-5-sonnet-20241022").model == "claude-3-5-sonnet"


def test_undated_request_matches_dated_config_model() -> None:
    assert TABLE.route("claude-sonnet-4").model == "claude-sonnet-4-20250514"
    assert TABLE.route("claude-sonnet-4-20990101").model == "claude-sonnet-4-20250514"


def test_dated_name_with_betas() -> None:
    r = TABLE.route("claude-3-5-sonnet-20241022,interleaved-thinking-2025-05-14")
    assert r == ModelRoute("claude-3-5-sonnet", ("interleaved-thinking-2025-05-14",), False)


def test_exact_match_wins_over_undated_match() -> None:
    assert TABLE.route("foo-20240101").model == "foo-20240101"
    assert TABLE.route("foo").model == "foo"


def test_only_a_trailing_eight_digit_date_is_ignored() -> None:
    assert TABLE.route("gpt-4o-2024101").model == "gpt-4o-2024101"  # 7 digits: not a date suffix
    assert TABLE.route("gpt-4o-202410221").model == "gpt-4o-202410221"  # 9 digits
    assert TABLE.route("gpt-20241022-4o").model == "gpt-20241022-4o"


def test_unknown_model_passes_through_unchanged() -> None:
    assert TABLE.route("mystery-model-20240101") == ModelRoute("mystery-model-20240101", (), False)
    assert TABLE.route("mystery,b1") == ModelRoute("mystery", ("b1",), False)


def test_supermemory_detected_by_api_base() -> None:
    assert TABLE.route("sm-gpt").supermemory is True
    assert TABLE.route("sm-gpt,beta").supermemory is True
    assert TABLE.route("sm-claude").supermemory is True
    assert TABLE.route("sm-claude-20250101").supermemory is True
    assert TABLE.route("gpt-4o").supermemory is False
    assert TABLE.route("lookalike").supermemory is False
    assert TABLE.route("unknown-supermemory.ai").supermemory is False


def test_empty_table() -> None:
    assert ModelTable(()).route("x-20240101,b") == ModelRoute("x-20240101", ("b",), False)
