"""app/config.py: environment defaults, config.yaml sections, unknown keys and start-up refusals."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from app.config import (
    INJECTION_MODES,
    QUERY_STRATEGIES,
    ConfigError,
    ProxyLimits,
    RetrievalSettings,
    ScopeRules,
    Settings,
    is_loopback_host,
    load_settings,
)


def write_config(tmp_path: Path, text: str) -> dict[str, str]:
    """Write config.yaml under tmp_path and return an env that points MEMORY_CONFIG at it."""
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return {"MEMORY_CONFIG": str(path)}


def config_error(tmp_path: Path, text: str, **env: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env={**write_config(tmp_path, text), **env})
    return str(info.value)


def assert_names(message: str, key_path: str, line: int) -> None:
    assert key_path in message, message
    assert re.search(rf"\bline {line}\b", message), message


# --- defaults -----------------------------------------------------------------------------------


def test_env_defaults_match_the_reference(tmp_path: Path) -> None:
    s = load_settings(env=write_config(tmp_path, "model_list: []\n"))
    assert s.host == "127.0.0.1"
    assert s.port == 8764
    assert s.litellm_base_url == "http://127.0.0.1:8765"
    assert s.master_key is None
    assert s.db_path == "./data/memory.db"
    assert s.supermemory_api_key is None
    assert s.loopback is True


def test_memory_config_defaults_to_config_yaml_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.yaml").write_text("user_id_mappings:\n  default_user_id: from-cwd\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert s.config_path == "./config.yaml"
    assert s.scopes.default_user_id == "from-cwd"


def test_env_values_override_defaults(tmp_path: Path) -> None:
    env = {
        **write_config(tmp_path, "{}\n"),
        "MEMORY_HOST": "localhost",
        "MEMORY_PORT": "9100",
        "LITELLM_BASE_URL": "http://127.0.0.1:9999/",
        "LITELLM_MASTER_KEY": "sk-master",
        "MEMORY_DB": "postgresql://u@h/db",
        "SUPERMEMORY_API_KEY": "sm-key",
    }
    s = load_settings(env=env)
    assert (s.host, s.port) == ("localhost", 9100)
    assert s.litellm_base_url == "http://127.0.0.1:9999"
    assert s.master_key == "sk-master"
    assert s.db_path == "postgresql://u@h/db"
    assert s.supermemory_api_key == "sm-key"


def test_memory_db_else_database_url(tmp_path: Path) -> None:
    env = {**write_config(tmp_path, "{}\n"), "DATABASE_URL": "postgresql://platform@db/app"}
    assert load_settings(env=env).db_path == "postgresql://platform@db/app"
    assert load_settings(env={**env, "MEMORY_DB": "/srv/memory.db"}).db_path == "/srv/memory.db"


def test_env_none_reads_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = write_config(tmp_path, "{}\n")
    monkeypatch.setenv("MEMORY_CONFIG", env["MEMORY_CONFIG"])
    monkeypatch.setenv("MEMORY_PORT", "9123")
    assert load_settings().port == 9123


@pytest.mark.parametrize("text", ["", "# only a comment\n", "model_list: []\n"])
def test_absent_sections_give_defaults(tmp_path: Path, text: str) -> None:
    s = load_settings(env=write_config(tmp_path, text))
    assert s.scopes == ScopeRules()
    assert s.scopes.custom_header == "x-memory-user-id"
    assert s.scopes.default_user_id == "default-dev"
    assert s.scopes.patterns == ()
    assert s.memory.enabled is True
    assert s.memory.capture_enabled is True
    assert s.memory.retrieval == RetrievalSettings()
    assert s.memory.retrieval.injection == "before_last_user"
    assert s.memory.retrieval.query_strategy == "last_user"
    assert (s.memory.retrieval.max_results, s.memory.retrieval.max_context_chars) == (5, 4000)
    assert s.memory.enabled_for_models == () and s.memory.disabled_for_models == ()
    assert s.keys == ()
    assert s.limits == ProxyLimits()


def test_full_spec_example_parses(tmp_path: Path) -> None:
    env = write_config(
        tmp_path,
        """
        user_id_mappings:
          custom_header: X-Memory-User-Id
          header_patterns:
            - {header: User-Agent, pattern: "^OpenAIClientImpl/Java", user_id: pycharm-ai}
            - {header: user-agent, pattern: "^claude-cli|Claude Code", user_id: claude-cli}
          default_user_id: default-dev
        memory:
          enabled: true
          retrieval: {max_results: 3, max_context_chars: 900, query_strategy: recent_user, injection: system,
                      min_relevance: 0.25}
          capture: {enabled: false}
          disabled_for_models: [demo]
        auth:
          keys:
            - {key: os.environ/PYCHARM_PROXY_KEY, user_id: pycharm-ai}
            - {key: os.environ/ADMIN_PROXY_KEY, admin: true}
        model_list:
          - model_name: sm
            litellm_params: {model: openai/gpt-4o, api_base: "https://api.supermemory.ai/v3/x"}
        """,
    )
    s = load_settings(env={**env, "PYCHARM_PROXY_KEY": "pc-secret", "ADMIN_PROXY_KEY": "adm-secret"})
    assert s.scopes.custom_header == "x-memory-user-id"
    assert [p.user_id for p in s.scopes.patterns] == ["pycharm-ai", "claude-cli"]
    assert s.scopes.patterns[0].header == "user-agent"
    assert s.scopes.patterns[1].pattern.search("CLAUDE CODE/1.0")  # case-insensitive
    assert s.memory.retrieval == RetrievalSettings(3, 900, "recent_user", "system", 0.25)
    assert s.memory.capture_enabled is False
    assert s.memory.disabled_for_models == ("demo",)
    assert s.models[0].name == "sm" and "supermemory.ai" in s.models[0].api_base


# --- os.environ/NAME keys ------------------------------------------------------------------------


def test_os_environ_key_resolution(tmp_path: Path) -> None:
    env = write_config(
        tmp_path,
        """
        auth:
          keys:
            - {key: os.environ/PYCHARM_PROXY_KEY, user_id: pycharm-ai}
            - {key: os.environ/ADMIN_PROXY_KEY, admin: true}
            - {key: literal-key, user_id: other}
        """,
    )
    s = load_settings(env={**env, "PYCHARM_PROXY_KEY": "pc-secret", "ADMIN_PROXY_KEY": "adm-secret"})
    assert [(k.key, k.user_id, k.admin) for k in s.keys] == [
        ("pc-secret", "pycharm-ai", False),
        ("adm-secret", None, True),
        ("literal-key", "other", False),
    ]


# --- errors name the key path and the line -------------------------------------------------------


def test_bad_regex_names_key_and_line(tmp_path: Path) -> None:
    msg = config_error(
        tmp_path,
        """
        user_id_mappings:
          header_patterns:
            - header: user-agent
              pattern: "^ok"
              user_id: first
            - header: user-agent
              pattern: "([unclosed"
              user_id: second
        """,
    )
    assert_names(msg, "user_id_mappings.header_patterns[1].pattern", 7)


def test_unknown_injection_mode_names_key_and_line(tmp_path: Path) -> None:
    msg = config_error(
        tmp_path,
        """
        memory:
          enabled: true
          retrieval:
            max_results: 5
            injection: prepend_everything
        """,
    )
    assert_names(msg, "memory.retrieval.injection", 5)
    assert "prepend_everything" in msg
    assert all(mode in msg for mode in INJECTION_MODES)


def test_unknown_query_strategy_is_an_error(tmp_path: Path) -> None:
    msg = config_error(tmp_path, "memory:\n  retrieval: {query_strategy: everything}\n")
    assert_names(msg, "memory.retrieval.query_strategy", 2)


def test_key_with_unset_env_var_names_key_and_line(tmp_path: Path) -> None:
    msg = config_error(
        tmp_path,
        """
        auth:
          keys:
            - key: literal-ok
              admin: true
            - key: os.environ/PYCHARM_PROXY_KEY
              user_id: pycharm-ai
        """,
    )
    assert_names(msg, "auth.keys[1].key", 5)
    assert "PYCHARM_PROXY_KEY" in msg


def test_key_with_empty_env_var_is_an_error(tmp_path: Path) -> None:
    msg = config_error(
        tmp_path, "auth:\n  keys:\n    - {key: os.environ/PYCHARM_PROXY_KEY, admin: true}\n", PYCHARM_PROXY_KEY=""
    )
    assert_names(msg, "auth.keys[0].key", 3)


def test_error_message_does_not_leak_key_values(tmp_path: Path) -> None:
    msg = config_error(
        tmp_path,
        "auth:\n  keys:\n"
        "    - {key: os.environ/A_KEY, admin: true}\n"
        "    - {key: os.environ/B_KEY, user_id: 'bad scope'}\n",
        A_KEY="super-secret-a",
        B_KEY="super-secret-b",
    )
    assert_names(msg, "auth.keys[1].user_id", 4)
    assert "super-secret" not in msg


def test_key_without_scope_or_admin_is_an_error(tmp_path: Path) -> None:
    msg = config_error(tmp_path, "auth:\n  keys:\n    - {key: abc}\n")
    assert_names(msg, "auth.keys[0]", 3)


def test_duplicate_key_values_are_an_error(tmp_path: Path) -> None:
    msg = config_error(tmp_path, "auth:\n  keys:\n    - {key: abc, admin: true}\n    - {key: abc, user_id: x}\n")
    assert "auth.keys" in msg


@pytest.mark.parametrize("bad", ["'has space'", "'a/b'", "''", "'" + "x" * 129 + "'", "'ünïcode'"])
def test_invalid_default_user_id_names_key_and_line(tmp_path: Path, bad: str) -> None:
    msg = config_error(tmp_path, f"user_id_mappings:\n  custom_header: x-memory-user-id\n  default_user_id: {bad}\n")
    assert_names(msg, "user_id_mappings.default_user_id", 3)


def test_invalid_pattern_user_id_is_an_error(tmp_path: Path) -> None:
    msg = config_error(
        tmp_path, "user_id_mappings:\n  header_patterns:\n    - {header: user-agent, pattern: x, user_id: 'no way'}\n"
    )
    assert_names(msg, "user_id_mappings.header_patterns[0].user_id", 3)


def test_valid_scope_name_edge_cases_accepted(tmp_path: Path) -> None:
    name = "A-z_0.9:@" + "x" * 119  # exactly 128 characters
    assert len(name) == 128
    s = load_settings(env=write_config(tmp_path, f"user_id_mappings:\n  default_user_id: '{name}'\n"))
    assert s.scopes.default_user_id == name


@pytest.mark.parametrize(
    ("text", "key_path", "line"),
    [
        ("memory:\n  enabled: 'yes'\n", "memory.enabled", 2),
        ("memory:\n  capture:\n    enabled: 1\n", "memory.capture.enabled", 3),
        ("memory:\n  retrieval:\n    max_results: five\n", "memory.retrieval.max_results", 3),
        ("memory:\n  retrieval:\n    max_results: true\n", "memory.retrieval.max_results", 3),
        ("memory:\n  retrieval:\n    max_context_chars: 0\n", "memory.retrieval.max_context_chars", 3),
        ("memory:\n  retrieval: [1, 2]\n", "memory.retrieval", 2),
        ("memory:\n  retrieval:\n    min_relevance: 1.5\n", "memory.retrieval.min_relevance", 3),
        ("memory:\n  retrieval:\n    min_relevance: none\n", "memory.retrieval.min_relevance", 3),
        ("memory:\n  enabled_for_models: demo\n", "memory.enabled_for_models", 2),
        ("memory:\n  enabled_for_models: [demo, 3]\n", "memory.enabled_for_models[1]", 2),
        ("user_id_mappings: [a, b]\n", "user_id_mappings", 1),
        ("user_id_mappings:\n  header_patterns: {header: x}\n", "user_id_mappings.header_patterns", 2),
        ("user_id_mappings:\n  default_user_id: 42\n", "user_id_mappings.default_user_id", 2),
        ("user_id_mappings:\n  custom_header: 7\n", "user_id_mappings.custom_header", 2),
        ("auth:\n  keys: {key: abc}\n", "auth.keys", 2),
        ("auth:\n  keys:\n    - {key: abc, admin: 'sure'}\n", "auth.keys[0].admin", 3),
        ("memory: 5\n", "memory", 1),
        # the value starts on a later line than its key: the key's line is reported
        ("memory:\n  retrieval:\n    - 1\n", "memory.retrieval", 2),
        ("auth:\n  keys:\n    key: abc\n", "auth.keys", 2),
        ("user_id_mappings:\n  header_patterns:\n\n    header: x\n", "user_id_mappings.header_patterns", 2),
    ],
)
def test_wrong_types_name_key_and_line(tmp_path: Path, text: str, key_path: str, line: int) -> None:
    assert_names(config_error(tmp_path, text), key_path, line)


def test_auth_section_of_wrong_type_is_not_silently_ignored(tmp_path: Path) -> None:
    # A list where a mapping belongs would otherwise mean "no keys": anonymous access, silently.
    msg = config_error(tmp_path, "auth:\n  - {key: abc, admin: true}\n")
    assert_names(msg, "auth", 1)


def test_both_model_filters_is_an_error(tmp_path: Path) -> None:
    msg = config_error(tmp_path, "memory:\n  enabled_for_models: [a]\n  disabled_for_models: [b]\n")
    assert_names(msg, "memory.disabled_for_models", 3)


def test_invalid_yaml_is_an_error(tmp_path: Path) -> None:
    msg = config_error(tmp_path, "memory:\n  enabled: [unclosed\n")
    assert "config.yaml" in msg


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MEMORY_CONFIG"):
        load_settings(env={"MEMORY_CONFIG": str(tmp_path / "nope.yaml")})


@pytest.mark.parametrize("name", ["MEMORY_PORT", "LITELLM_PORT"])
@pytest.mark.parametrize("value", ["http", "0", "70000", "-1"])
def test_bad_port_is_an_error(tmp_path: Path, name: str, value: str) -> None:
    assert name in config_error(tmp_path, "{}\n", **{name: value})


def test_bad_base_url_is_an_error(tmp_path: Path) -> None:
    assert "LITELLM_BASE_URL" in config_error(tmp_path, "{}\n", LITELLM_BASE_URL="127.0.0.1:8765")


# --- exposure ----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.com"])
def test_non_loopback_without_keys_refuses_to_start(tmp_path: Path, host: str) -> None:
    msg = config_error(tmp_path, "{}\n", MEMORY_HOST=host)
    assert "MEMORY_HOST" in msg and "auth.keys" in msg


def test_non_loopback_with_keys_starts(tmp_path: Path) -> None:
    env = write_config(tmp_path, "auth:\n  keys:\n    - {key: os.environ/ADMIN_PROXY_KEY, admin: true}\n")
    s = load_settings(env={**env, "MEMORY_HOST": "0.0.0.0", "ADMIN_PROXY_KEY": "k"})
    assert s.loopback is False and len(s.keys) == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]"])
def test_loopback_without_keys_starts(tmp_path: Path, host: str) -> None:
    s = load_settings(env={**write_config(tmp_path, "{}\n"), "MEMORY_HOST": host})
    assert s.loopback is True and s.keys == ()


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("app.localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("localhost.example.com", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_is_loopback_host(host: str, expected: bool) -> None:
    assert is_loopback_host(host) is expected


# --- one source of defaults, and no silent typos ---------------------------------------------------


def test_an_empty_config_gives_exactly_the_dataclass_defaults(tmp_path: Path) -> None:
    env = write_config(tmp_path, "model_list: []\n")
    assert load_settings(env=env) == Settings(config_path=env["MEMORY_CONFIG"])


@pytest.mark.parametrize(
    ("text", "where", "suggestion"),
    [
        ("memroy:\n  enabled: false\n", "memroy", "'memory'"),
        ("memory:\n  retreival:\n    max_results: 2\n", "memory.retreival", "'retrieval'"),
        ("memory:\n  capture:\n    enable: false\n", "memory.capture.enable", "'enabled'"),
        ("proxy:\n  max_body_md: 3\n", "proxy.max_body_md", "'max_body_mb'"),
        ("auth:\n  keys:\n    - {key: k, user_id: a, admn: true}\n", "auth.keys[0].admn", "'admin'"),
        ("user_id_mappings:\n  custom_headr: x-a\n", "user_id_mappings.custom_headr", "'custom_header'"),
        (
            "user_id_mappings:\n  header_patterns:\n    - {header: a, pattern: b, user_id: c, userid: d}\n",
            "user_id_mappings.header_patterns[0].userid",
            "'user_id'",
        ),
    ],
)
def test_unknown_keys_in_our_sections_stop_start_up_with_a_suggestion(
    tmp_path: Path, text: str, where: str, suggestion: str
) -> None:
    message = config_error(tmp_path, text)
    assert where in message and suggestion in message and "line" in message


def test_litellm_sections_are_not_checked(tmp_path: Path) -> None:
    text = """
    litellm_settings: {anything_litellm_knows: 1}
    router_settings: {routing_strategy: simple-shuffle}
    general_settings: {master_key: os.environ/X}
    environment_variables: {A: b}
    """
    assert load_settings(env=write_config(tmp_path, text)).memory.enabled


def test_enumerations_are_closed_types() -> None:
    assert set(INJECTION_MODES) == {"before_last_user", "system", "last_user_suffix"}
    assert set(QUERY_STRATEGIES) == {"last_user", "last_user_and_assistant", "recent_user"}


def test_admin_litellm_controls_are_read_and_checked(tmp_path: Path) -> None:
    text = "proxy:\n  admin_litellm_controls: [num_retries, X-LiteLLM-Tags]\n"
    s = load_settings(env=write_config(tmp_path, text))
    assert s.limits.admin_litellm_controls == frozenset({"num_retries", "x-litellm-tags"})
    assert load_settings(env=write_config(tmp_path, "model_list: []\n")).limits.admin_litellm_controls == frozenset()
    assert_names(config_error(tmp_path, "proxy:\n  admin_litellm_controls: [1]\n"), "admin_litellm_controls[0]", 2)


def test_projects_settings(tmp_path: Path) -> None:
    env = write_config(tmp_path, "memory:\n  projects: {mode: per_client, local_owner: me}\n")
    projects = load_settings(env=env).scopes.projects
    assert (projects.mode, projects.local_owner) == ("per_client", "me")
    assert load_settings(env=write_config(tmp_path, "memory: {}\n")).scopes.projects.mode == "shared"
    assert_names(config_error(tmp_path, "memory:\n  projects:\n    mode: everywhere\n"), "memory.projects.mode", 3)
    bad_owner = config_error(tmp_path, "memory:\n  projects:\n    local_owner: a b\n")
    assert_names(bad_owner, "memory.projects.local_owner", 3)


def test_a_pinned_key_may_not_live_under_another_owners_projects(tmp_path: Path) -> None:
    keys = "auth:\n  keys:\n    - {key: k1, user_id: alice}\n    - {key: k2, user_id: 'alice:alpha-3f2a9c'}\n"
    assert_names(config_error(tmp_path, keys), "auth.keys[1].user_id", 4)
    local = "auth:\n  keys:\n    - {key: k1, user_id: 'local:alpha'}\n"
    assert "owner 'local'" in config_error(tmp_path, local)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("max_age_days: -3", "memory.retention.max_age_days"),
        ("max_age_days: a month", "memory.retention.max_age_days"),
        ("max_per_scope: -1", "memory.retention.max_per_scope"),
        ("max_per_scope: 2.5", "memory.retention.max_per_scope"),
        ("max_per_scope: lots", "memory.retention.max_per_scope"),
        ("interval_seconds: 0", "memory.retention.interval_seconds"),
    ],
)
def test_bad_retention_values_stop_start_up_naming_key_and_line(tmp_path: Path, line: str, key: str) -> None:
    msg = config_error(tmp_path, f"memory:\n  redact_secrets: true\n  retention:\n    {line}\n")
    assert_names(msg, key, 4)


def test_retention_is_off_and_redaction_on_by_default(tmp_path: Path) -> None:
    memory = load_settings(env=write_config(tmp_path, "memory: {}\n")).memory
    assert memory.redact_secrets is True
    assert (memory.retention.max_age_days, memory.retention.max_per_scope) == (None, None)
    set_ = load_settings(env=write_config(tmp_path, "memory:\n  retention: {max_age_days: 30, max_per_scope: 500}\n"))
    assert (set_.memory.retention.max_age_days, set_.memory.retention.max_per_scope) == (30.0, 500)
