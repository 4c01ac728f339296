"""Settings: the environment and config.yaml, validated once at start-up (reference: docs/configuration.md).

Every default lives once, on the dataclass field; the parser reads it from there."""

from __future__ import annotations

import difflib
import functools
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from dotenv import dotenv_values

Injection = Literal["before_last_user", "system", "last_user_suffix"]
QueryStrategy = Literal["last_user", "last_user_and_assistant", "recent_user"]
INJECTION_MODES: tuple[Injection, ...] = get_args(Injection)
QUERY_STRATEGIES: tuple[QueryStrategy, ...] = get_args(QueryStrategy)
OUR_SECTIONS = ("user_id_mappings", "memory", "auth", "proxy", "observability")
# LiteLLM's own top-level sections: never checked here, and never mistaken for a typo of ours.
LITELLM_SECTIONS = frozenset(
    {
        "model_list",
        "litellm_settings",
        "general_settings",
        "router_settings",
        "environment_variables",
        "include",
        "callback_settings",
        "credential_list",
        "guardrails",
        "mcp_servers",
    }
)
SCOPE_RE = re.compile(r"[A-Za-z0-9._:@-]{1,128}")  # always fullmatch: `$` would accept a trailing newline


DEFAULT_LITELLM_PORT = 8765
MB = 1024 * 1024


class ConfigError(Exception):
    """A configuration problem that must stop start-up; the message names the key and line."""


@dataclass(frozen=True)
class HeaderPattern:
    """One `user_id_mappings.header_patterns` entry."""

    header: str
    pattern: re.Pattern[str]
    user_id: str


PROJECT_MODES = ("shared", "per_client", "off")


@dataclass(frozen=True)
class ProjectSettings:
    """The `memory.projects:` section: whether and under whom a working directory gets its own scope."""

    mode: Literal["shared", "per_client", "off"] = "shared"
    local_owner: str = "local"  # the owner of anonymous loopback callers and admin keys without a user_id


@dataclass(frozen=True)
class ScopeRules:
    """How a request's scope is detected from its headers and the client's working directory."""

    custom_header: str = "x-memory-user-id"
    patterns: tuple[HeaderPattern, ...] = ()
    default_user_id: str = "default-dev"
    projects: ProjectSettings = field(default_factory=ProjectSettings)


@dataclass(frozen=True)
class RetrievalSettings:
    """How memories are recalled and injected."""

    max_results: int = 5
    max_context_chars: int = 4000
    query_strategy: QueryStrategy = "last_user"
    injection: Injection = "before_last_user"
    min_relevance: float = 0.3


@dataclass(frozen=True)
class RetentionSettings:
    """`memory.retention`: how long memories are kept and how many a scope keeps (None: no limit)."""

    max_age_days: float | None = None
    max_per_scope: int | None = None
    interval_seconds: float = 60.0  # between background passes


@dataclass(frozen=True)
class MemorySettings:
    """The `memory:` section."""

    enabled: bool = True
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    capture_enabled: bool = True
    enabled_for_models: tuple[str, ...] = ()
    disabled_for_models: tuple[str, ...] = ()
    max_memory_chars: int = 100_000
    max_import_bytes: int = 32 * 1024 * 1024
    max_import_lines: int = 200_000
    redact_secrets: bool = True
    retention: RetentionSettings = field(default_factory=RetentionSettings)


@dataclass(frozen=True)
class ApiKey:
    """A client key from `auth.keys`."""

    key: str
    user_id: str | None = None
    admin: bool = False


@dataclass(frozen=True)
class ModelEntry:
    """What the proxy needs to know of one LiteLLM `model_list` entry."""

    name: str
    api_base: str = ""


@dataclass(frozen=True)
class ProxyLimits:
    """The `proxy:` section: limits, timeouts and browser-origin policy."""

    max_body_bytes: int = 32 * 1024 * 1024
    connect_timeout: float = 5.0
    read_timeout: float = 600.0
    max_concurrent_requests: int = 256
    per_key_share: float = 0.5  # of max_concurrent_requests that one key (or anonymous) may hold
    header_timeout: float = 10.0  # seconds a client may take to send its request line and headers
    body_timeout: float = 60.0  # seconds a client may take to send its request body
    allowed_origins: tuple[str, ...] = ()
    # LiteLLM request controls (body fields like `num_retries`, `x-litellm-*` headers) that admin keys
    # may still send; every other key's are removed (app/bodies.py, app/headers.py).
    admin_litellm_controls: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Observability:
    """The `observability:` section: Prometheus metrics, usage records and the dashboard."""

    metrics_enabled: bool = True
    metrics_scope_label: bool = False  # one series per scope: only where scopes are few
    usage_enabled: bool = True
    usage_retention_days: int = 90
    dashboard_enabled: bool = True


@dataclass(frozen=True)
class Settings:
    """Everything the memory proxy reads at start-up."""

    host: str = "127.0.0.1"
    port: int = 8764
    litellm_base_url: str = f"http://127.0.0.1:{DEFAULT_LITELLM_PORT}"
    master_key: str | None = None
    config_path: str = "./config.yaml"
    db_path: str = "./data/memory.db"
    supermemory_api_key: str | None = None
    scopes: ScopeRules = field(default_factory=ScopeRules)
    memory: MemorySettings = field(default_factory=MemorySettings)
    keys: tuple[ApiKey, ...] = ()
    models: tuple[ModelEntry, ...] = ()
    limits: ProxyLimits = field(default_factory=ProxyLimits)
    observability: Observability = field(default_factory=Observability)

    @property
    def loopback(self) -> bool:
        """True when the proxy listens on a loopback address only."""
        return is_loopback_host(self.host)


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback IP literals (cached: the guard asks on every request)."""
    return len(host) <= MAX_HOST_CHARS and _is_loopback_host(host)


MAX_HOST_CHARS = 255  # no DNS name is longer: a longer Host header is not loopback, and is not cached


@functools.lru_cache(maxsize=1024)
def _is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Doc:
    """A parsed YAML document that remembers the line of every key, for error messages."""

    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.lines: dict[tuple[Any, ...], int] = {}
        self.read: set[tuple[Any, ...]] = set()  # every key path the parser asked for
        self._scalars = yaml.SafeLoader("")  # types scalars the way yaml.safe_load would
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        self.data = self._build(node, ()) if node is not None else {}
        if not isinstance(self.data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")

    def _build(self, node: yaml.Node, at: tuple[Any, ...]) -> Any:
        self.lines[at] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out = {}
            for key_node, value_node in node.value:
                key = key_node.value
                out[key] = self._build(value_node, (*at, key))
                self.lines[(*at, key)] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._build(item, (*at, i)) for i, item in enumerate(node.value)]
        return self._scalars.construct_object(node, deep=True)

    def error(self, at: tuple[Any, ...], message: str) -> ConfigError:
        """A ConfigError naming the dotted key and its line."""
        name = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in at).replace(".[", "[")
        line = self.lines.get(at)
        where = f"{self.path} line {line}" if line else self.path
        return ConfigError(f"{where}: {name}: {message}")

    def get(self, at: tuple[Any, ...], kind: type | tuple[type, ...], default: Any) -> Any:
        """The value at a key path, type-checked, or the default when absent."""
        self.read.add(at)
        node: Any = self.data
        for part in at:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return default
        if node is None:
            return default
        if kind is bool and not isinstance(node, bool):
            raise self.error(at, f"must be true or false, not {node!r}")
        if (isinstance(node, bool) and kind is not bool) or not isinstance(node, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.error(at, f"must be {names}, not {type(node).__name__}")
        return node

    def mark(self, at: tuple[Any, ...]) -> None:
        """Note a key path the parser read without `get`."""
        self.read.add(at)

    def check_unknown(self) -> None:
        """Stop at the first key in our sections that nothing reads, suggesting the closest known one."""
        for top in self.data:
            if top not in OUR_SECTIONS and top not in LITELLM_SECTIONS:
                close = difflib.get_close_matches(str(top), OUR_SECTIONS, n=1, cutoff=0.75)
                if close:
                    raise self.error((top,), f"unknown section; did you mean {close[0]!r}?")
        for section in OUR_SECTIONS:
            self._check_node(self.data.get(section), (section,))

    def _check_node(self, node: Any, at: tuple[Any, ...]) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                self._check_node(item, (*at, i))
        elif isinstance(node, dict):
            known = sorted(str(p[-1]) for p in self.read if len(p) == len(at) + 1 and p[:-1] == at)
            for key, value in node.items():
                if (*at, key) not in self.read:
                    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
                    raise self.error((*at, key), f"unknown key{hint}")
                self._check_node(value, (*at, key))


def resolve_env_ref(value: str, env: Mapping[str, str]) -> str | None:
    """Resolve LiteLLM-style `os.environ/NAME` references; other strings pass through."""
    if value.startswith("os.environ/"):
        return env.get(value.removeprefix("os.environ/")) or None
    return value


def _positive(doc: _Doc, at: tuple[Any, ...], kind: type, default: Any) -> Any:
    value = doc.get(at, (int, float) if kind is float else kind, default)
    if value is None:  # absent, with no default: no limit
        return None
    if value <= 0:
        raise doc.error(at, f"must be greater than 0, not {value}")
    return kind(value)


def _share(doc: _Doc, at: tuple[Any, ...], default: float) -> float:
    value = _positive(doc, at, float, default)
    if value > 1:
        raise doc.error(at, f"must be a fraction from 0 to 1, not {value}")
    return value


def _scope_name(doc: _Doc, at: tuple[Any, ...], value: Any) -> str:
    if not isinstance(value, str) or not SCOPE_RE.fullmatch(value):
        raise doc.error(at, f"{value!r} is not a valid scope name (1-128 of A-Z a-z 0-9 . _ : @ -)")
    return value


def _scopes(doc: _Doc) -> ScopeRules:
    sec = ("user_id_mappings",)
    doc.get(sec, dict, {})
    custom = doc.get((*sec, "custom_header"), str, ScopeRules.custom_header).strip().lower()
    patterns = []
    for i, entry in enumerate(doc.get((*sec, "header_patterns"), list, [])):
        at = (*sec, "header_patterns", i)
        if not isinstance(entry, dict):
            raise doc.error(at, "must be a mapping with header, pattern and user_id")
        for key in ("header", "pattern", "user_id"):
            doc.mark((*at, key))
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise doc.error((*at, key), "is required and must be a non-empty string")
        try:
            compiled = re.compile(entry["pattern"], re.IGNORECASE)
        except re.error as exc:
            raise doc.error((*at, "pattern"), f"bad regular expression {entry['pattern']!r}: {exc}") from None
        patterns.append(
            HeaderPattern(entry["header"].lower(), compiled, _scope_name(doc, (*at, "user_id"), entry["user_id"]))
        )
    default = doc.get((*sec, "default_user_id"), str, ScopeRules.default_user_id)
    return ScopeRules(custom, tuple(patterns), _scope_name(doc, (*sec, "default_user_id"), default), _projects(doc))


def _projects(doc: _Doc) -> ProjectSettings:
    sec = ("memory", "projects")
    doc.get(sec, dict, {})
    owner = doc.get((*sec, "local_owner"), str, ProjectSettings.local_owner)
    return ProjectSettings(
        mode=_choice(doc, (*sec, "mode"), PROJECT_MODES, ProjectSettings.mode),
        local_owner=_scope_name(doc, (*sec, "local_owner"), owner),
    )


def _choice(doc: _Doc, at: tuple[Any, ...], choices: tuple[str, ...], default: str) -> Any:
    value = doc.get(at, str, default)
    if value not in choices:
        raise doc.error(at, f"unknown value {value!r}; use one of {', '.join(choices)}")
    return value


def _memory(doc: _Doc) -> MemorySettings:
    sec = ("memory",)
    doc.get(sec, dict, {})
    r = (*sec, "retrieval")
    doc.get(r, dict, {})
    d = RetrievalSettings
    retrieval = RetrievalSettings(
        max_results=_positive(doc, (*r, "max_results"), int, d.max_results),
        max_context_chars=_positive(doc, (*r, "max_context_chars"), int, d.max_context_chars),
        query_strategy=_choice(doc, (*r, "query_strategy"), QUERY_STRATEGIES, d.query_strategy),
        injection=_choice(doc, (*r, "injection"), INJECTION_MODES, d.injection),
        min_relevance=_share(doc, (*r, "min_relevance"), d.min_relevance),
    )
    doc.get((*sec, "capture"), dict, {})
    models = {}
    for key in ("enabled_for_models", "disabled_for_models"):
        names = doc.get((*sec, key), list, [])
        for i, name in enumerate(names):
            if not isinstance(name, str):
                raise doc.error((*sec, key, i), "must be a model name")
        models[key] = tuple(names)
    if models["enabled_for_models"] and models["disabled_for_models"]:
        raise doc.error((*sec, "disabled_for_models"), "set enabled_for_models or disabled_for_models, not both")
    return MemorySettings(
        enabled=doc.get((*sec, "enabled"), bool, MemorySettings.enabled),
        retrieval=retrieval,
        capture_enabled=doc.get((*sec, "capture", "enabled"), bool, MemorySettings.capture_enabled),
        max_memory_chars=_positive(doc, (*sec, "max_memory_chars"), int, MemorySettings.max_memory_chars),
        max_import_bytes=int(_positive(doc, (*sec, "max_import_mb"), float, MemorySettings.max_import_bytes / MB) * MB),
        max_import_lines=_positive(doc, (*sec, "max_import_lines"), int, MemorySettings.max_import_lines),
        redact_secrets=doc.get((*sec, "redact_secrets"), bool, MemorySettings.redact_secrets),
        retention=_retention(doc, (*sec, "retention")),
        **models,
    )


def _retention(doc: _Doc, sec: tuple[Any, ...]) -> RetentionSettings:
    doc.get(sec, dict, {})
    return RetentionSettings(
        max_age_days=_positive(doc, (*sec, "max_age_days"), float, None),
        max_per_scope=_positive(doc, (*sec, "max_per_scope"), int, None),
        interval_seconds=_positive(doc, (*sec, "interval_seconds"), float, RetentionSettings.interval_seconds),
    )


def _keys(doc: _Doc, env: Mapping[str, str]) -> tuple[ApiKey, ...]:
    doc.get(("auth",), dict, {})
    keys = []
    for i, entry in enumerate(doc.get(("auth", "keys"), list, [])):
        at = ("auth", "keys", i)
        if not isinstance(entry, dict):
            raise doc.error(at, "must be a mapping with key and user_id or admin")
        doc.mark((*at, "key"))
        doc.mark((*at, "user_id"))
        raw = entry.get("key")
        if not isinstance(raw, str) or not raw:
            raise doc.error((*at, "key"), "is required")
        value = resolve_env_ref(raw, env)
        if not value:
            raise doc.error((*at, "key"), f"{raw} has no value (set that environment variable)")
        admin = doc.get((*at, "admin"), bool, ApiKey.admin)
        user_id = entry.get("user_id")
        if user_id is not None:
            user_id = _scope_name(doc, (*at, "user_id"), user_id)
        if not admin and user_id is None:
            raise doc.error(at, "a key needs a user_id or admin: true")
        keys.append(ApiKey(value, user_id, admin))
    if len({k.key for k in keys}) != len(keys):
        raise doc.error(("auth", "keys"), "two entries have the same key value")
    _check_owners(doc, keys)
    return tuple(keys)


def _check_owners(doc: _Doc, keys: list[ApiKey]) -> None:
    """A pinned key reaches `<its scope>:…` (its project scopes): no other owner may live under that prefix."""
    owners = {k.user_id for k in keys if not k.admin and k.user_id is not None}
    owners.add(doc.get(("memory", "projects", "local_owner"), str, ProjectSettings.local_owner))
    for i, entry in enumerate(keys):
        if entry.admin or entry.user_id is None:
            continue
        for other in owners:
            if other != entry.user_id and entry.user_id.startswith(f"{other}:"):
                raise doc.error(("auth", "keys", i, "user_id"), f"lies under owner {other!r}'s project scopes")


def _models(doc: _Doc) -> tuple[ModelEntry, ...]:
    out = []
    for i, entry in enumerate(doc.get(("model_list",), list, [])):
        if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str):
            raise doc.error(("model_list", i), "needs a model_name")
        params = entry.get("litellm_params") or {}
        api_base = params.get("api_base") if isinstance(params, dict) else None
        out.append(ModelEntry(entry["model_name"], api_base if isinstance(api_base, str) else ""))
    return tuple(out)


def _limits(doc: _Doc) -> ProxyLimits:
    sec = ("proxy",)
    doc.get(sec, dict, {})
    origins = doc.get((*sec, "allowed_origins"), list, [])
    for i, origin in enumerate(origins):
        if not isinstance(origin, str) or not re.match(r"^https?://[^/]+$", origin):
            raise doc.error((*sec, "allowed_origins", i), f"{origin!r} is not an origin like http://localhost:3000")
    d = ProxyLimits
    return ProxyLimits(
        max_body_bytes=int(_positive(doc, (*sec, "max_body_mb"), float, d.max_body_bytes / MB) * MB),
        connect_timeout=_positive(doc, (*sec, "connect_timeout"), float, d.connect_timeout),
        read_timeout=_positive(doc, (*sec, "read_timeout"), float, d.read_timeout),
        max_concurrent_requests=_positive(doc, (*sec, "max_concurrent_requests"), int, d.max_concurrent_requests),
        per_key_share=_share(doc, (*sec, "per_key_share"), d.per_key_share),
        header_timeout=_positive(doc, (*sec, "header_timeout"), float, d.header_timeout),
        body_timeout=_positive(doc, (*sec, "body_timeout"), float, d.body_timeout),
        allowed_origins=tuple(o.lower() for o in origins),
        admin_litellm_controls=frozenset(_names(doc, (*sec, "admin_litellm_controls"))),
    )


def _names(doc: _Doc, path: tuple[Any, ...]) -> list[str]:
    names = doc.get(path, list, [])
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise doc.error((*path, i), "must be a field or header name")
    return [n.lower() if n.lower().startswith("x-litellm-") else n for n in names]


def _observability(doc: _Doc) -> Observability:
    sec = ("observability",)
    doc.get(sec, dict, {})
    for part in ("metrics", "usage", "dashboard"):
        doc.get((*sec, part), dict, {})
    d = Observability
    return Observability(
        metrics_enabled=doc.get((*sec, "metrics", "enabled"), bool, d.metrics_enabled),
        metrics_scope_label=doc.get((*sec, "metrics", "scope_label"), bool, d.metrics_scope_label),
        usage_enabled=doc.get((*sec, "usage", "enabled"), bool, d.usage_enabled),
        usage_retention_days=_positive(doc, (*sec, "usage", "retention_days"), int, d.usage_retention_days),
        dashboard_enabled=doc.get((*sec, "dashboard", "enabled"), bool, d.dashboard_enabled),
    )


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{name}={raw!r} is not a port number (1-65535): set it in .env or the environment")
    return int(raw)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from `env` (default: the process environment over `.env`) and config.yaml."""
    if env is None:
        env_file = os.environ.get("MEMORY_ENV_FILE", ".env")
        file_values = dotenv_values(env_file) if env_file and Path(env_file).is_file() else {}
        env = {**{k: v for k, v in file_values.items() if v is not None}, **os.environ}
    config_path = env.get("MEMORY_CONFIG") or Settings.config_path
    try:
        text = Path(config_path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"MEMORY_CONFIG={config_path}: cannot read the config file: {exc.strerror}") from None
    doc = _Doc(text, config_path)
    litellm_port = _port(env, "LITELLM_PORT", DEFAULT_LITELLM_PORT)
    base_url = (env.get("LITELLM_BASE_URL") or f"http://127.0.0.1:{litellm_port}").rstrip("/")
    if not re.match(r"^https?://", base_url):
        raise ConfigError(f"environment: LITELLM_BASE_URL={base_url!r} must start with http:// or https://")
    settings = Settings(
        host=env.get("MEMORY_HOST") or Settings.host,
        port=_port(env, "MEMORY_PORT", Settings.port),
        litellm_base_url=base_url,
        master_key=env.get("LITELLM_MASTER_KEY") or None,
        config_path=config_path,
        # A platform's attached database arrives as DATABASE_URL; MEMORY_DB names the store explicitly.
        db_path=env.get("MEMORY_DB") or env.get("DATABASE_URL") or Settings.db_path,
        supermemory_api_key=env.get("SUPERMEMORY_API_KEY") or None,
        scopes=_scopes(doc),
        memory=_memory(doc),
        keys=_keys(doc, env),
        models=_models(doc),
        limits=_limits(doc),
        observability=_observability(doc),
    )
    doc.check_unknown()
    check_exposure(settings)
    return settings


def check_exposure(settings: Settings) -> None:
    """Refuse to serve anonymous clients on a non-loopback address."""
    if not settings.loopback and not settings.keys:
        raise ConfigError(
            f"MEMORY_HOST={settings.host} is not a loopback address and auth.keys is empty: "
            "anonymous clients are only allowed on loopback; add auth.keys to config.yaml"
        )
