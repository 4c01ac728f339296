"""Request-body hygiene: what LiteLLM reads as JSON, fields that must not steer it, JSON too deep to handle."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson

from app.auth import Principal

# Provider-routing fields a client must not steer (LiteLLM CVE-2024-6587): LiteLLM would honour them.
ROUTING_FIELDS = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "organization",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_region_name",
        "vertex_credentials",
        "azure_ad_token",
        "user_config",
    }
)
# LiteLLM's own request parameters (LiteLLM 1.108.7: `litellm.types.utils.all_litellm_params`, minus
# `metadata`, which both wire formats define) and the Router's call arguments (litellm/router.py):
# retries, fallbacks, timeouts, mock replies, caching, callbacks, prices, deployments. They decide how
# many provider calls one request makes and what they cost, so only the operator sets them.
CONTROL_FIELDS = frozenset(
    """
    acompletion adaptive_router_config adaptive_router_default_model aembedding aimg_generation
    allm_passthrough_route allow_client_keepalive_override allowed_model_region allowed_openai_params
    annotation_cost_per_page annotation_cost_per_page_batches assistant_continue_message async_call
    atext_completion attempted_targets aws_batch_role_arn azure base_model bedrock_tags bos_token
    budget_duration cache cache_key caching caching_groups citation_cost_per_token client client_id
    client_secret client_side_timeout complete_response completion_call_id complexity_router_config
    complexity_router_default_model configurable_clientside_auth_params context_window_fallback_dict
    cooldown_time cost_per_query cost_per_second custom_llm_provider custom_prompt_dict data_residency
    default_api_key_rpm_limit default_api_key_tpm_limit disable_add_transform_inline_image_block
    enable_json_schema_validation enable_prompt_caching enable_tag_filtering ensure_alternating_roles
    eos_token fallback_depth fallbacks fastest_response final_prompt_value fireworks_forward_user_id
    force_timeout github_copilot_auth_type github_copilot_user_session google_maps_grounding_cost_per_query
    guardrails headers hf_model_name humanloop_api_key id itpm keepalive_seconds litellm_call_id
    litellm_credential_name litellm_disabled_callbacks litellm_logging_obj litellm_metadata
    litellm_request_debug litellm_session_id litellm_system_prompt litellm_trace_id
    litellm_trusted_callback_vars log_client_error_tracebacks logger_fn max_agentic_loops max_budget
    max_fallbacks max_file_size_mb max_parallel_requests max_retries merge_reasoning_content_in_choices
    mock_response mock_timeout model_alias_map model_config model_file_id_mapping model_info model_list
    newrelic_api_key newrelic_region no-log num_retries ocr_cost_per_credit ocr_cost_per_page
    ocr_cost_per_page_batches openai_identity_provider_id openai_identity_token_file
    openai_service_account_id order otpm output_vector_size posthog_api_key posthog_api_url preset_cache_key
    prompt_environment prompt_id prompt_label prompt_variables prompt_version provider_affinity_header
    provider_specific_header proxy_server_request quality_router_config quality_router_default_model
    region_name request_timeout retry_policy retry_strategy roles routing_strategy rpm rust
    search_context_cost_per_query search_tool_name secret_fields self shared_session
    signoz_ingestion_endpoint signoz_ingestion_key silent_model ssl_verify stream_chunk_size
    stream_response stream_timeout stream_timeout_by_service_tier supports_system_message tag_regex tags
    tenant_id text_completion tiered_pricing timeout_by_service_tier token_exchange_audience
    token_exchange_endpoint token_exchange_profile token_exchange_scope tpm ttl turn_off_message_logging
    use_chat_completions_api use_client use_in_pass_through use_litellm_proxy use_xai_oauth
    user_continue_message verbose wandb_api_key weave_project_id weight
    timeout content_policy_fallbacks context_window_fallbacks disable_fallbacks include_fallback_errors
    model_group_retry_policy mock_testing_rate_limit_error passthrough_on_no_deployment routing_strategy_args
    specific_deployment
    """.split()
)
# The families of LiteLLM parameters named by prefix (its per-provider credentials and price overrides,
# and its internal `_…` arguments).
CONTROL_PREFIXES = (
    "_",
    "input_cost_per_",
    "output_cost_per_",
    "cache_creation_input_",
    "cache_read_input_",
    "anthropic_",
    "langfuse_",
    "langsmith_",
    "arize_",
    "s3_",
    "dd_",
    "azure_",
    "gcs_",
    "auto_router_",
    "regional_",
    "mock_testing_",
)
# `metadata` keys LiteLLM's proxy and Router act on (litellm/router.py, proxy/litellm_pre_call_utils.py);
# `user_id` stays: it is Anthropic's own field.
METADATA_CONTROLS = frozenset(
    """
    attempted_fallbacks attempted_retries callback_settings deployment disable_global_guardrails
    enable_prompt_caching enforced_params litellm_disabled_callbacks model_config model_group model_info
    opted_out_global_guardrails original_model_group previous_models request_retry_count routing_decision
    session_id spend_logs_metadata tags turn_off_message_logging user_api_key_hash
    """.split()
)
MAX_JSON_DEPTH = 64  # nesting past this is refused (400) on every route that reads JSON
TOO_DEEP = f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels"


def is_control_field(name: str) -> bool:
    """True for a LiteLLM parameter (not part of the OpenAI or Anthropic wire formats)."""
    return name in CONTROL_FIELDS or name.startswith(CONTROL_PREFIXES)


def controls_allowed(principal: Principal | None, admin_allowed: frozenset[str]) -> frozenset[str]:
    """The LiteLLM controls (fields and `x-litellm-*` headers) this caller may send: the operator's list
    for admin keys (and the anonymous loopback owner), none for any other key."""
    return admin_allowed if principal is not None and principal.operator else frozenset()


def strip_routing_fields(body: dict[str, Any], allowed: Collection[str] = ()) -> bool:
    """Remove provider-routing fields, and LiteLLM controls except those in `allowed`, at the top level
    and in `metadata`; True if any went."""

    def unwanted(name: str, nested: bool) -> bool:
        if name in ROUTING_FIELDS:
            return True
        if name in allowed:
            return False
        return is_control_field(name) or (nested and name in METADATA_CONTROLS)

    found = [k for k in body if unwanted(k, nested=False)]
    for k in found:
        del body[k]
    meta = body.get("metadata")
    if isinstance(meta, dict):
        nested = [k for k in meta if unwanted(k, nested=True)]
        for k in nested:
            del meta[k]
        found += nested
    return bool(found)


def too_deep(raw: bytes, value: Any) -> bool:
    """True when `value` (parsed from `raw`) nests arrays and objects more than MAX_JSON_DEPTH deep."""
    # A body with fewer containers than the limit cannot pass it: a count over the bytes (C speed)
    # spares the walk for most requests.
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False
    level = [value]
    for _ in range(MAX_JSON_DEPTH):
        level = [
            child
            for v in level
            for child in (v.values() if isinstance(v, dict) else v)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


class TooDeep(ValueError):
    """A JSON document nested past MAX_JSON_DEPTH."""


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


def media_type(content_type: str | None) -> str:
    """The bare media type of a `content-type` value: no parameters, lower case ("" when absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_type(content_type: str | None) -> bool:
    """True for `application/json` and its `+json` relatives."""
    kind = media_type(content_type)
    return kind == JSON or kind.endswith("+json")


def parse_json(raw: bytes) -> Any:
    """`raw` parsed; raises orjson.JSONDecodeError when it is not JSON, TooDeep past MAX_JSON_DEPTH."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):  # orjson's own limit (1,024 levels): deeper still
            raise TooDeep(TOO_DEEP) from None
        raise
    if isinstance(value, dict | list) and too_deep(raw, value):
        raise TooDeep(TOO_DEEP)
    return value


def clean_json_body(raw: bytes, content_type: str | None, allowed: Collection[str] = ()) -> tuple[bytes, bool]:
    """The pass-through body without routing fields and LiteLLM controls, and whether it must go
    upstream as `application/json`. Raises TooDeep past MAX_JSON_DEPTH.

    LiteLLM parses every body as JSON except a form's, whatever its content-type says, so every body
    that parses is cleaned. A JSON body labelled as a form (`curl -d` without `-H content-type`) is
    relabelled: LiteLLM would read it as form fields. Anything else keeps its bytes and label.
    """
    try:
        body = parse_json(raw)
    except orjson.JSONDecodeError:
        return raw, False  # a real form, or malformed JSON that LiteLLM answers in its own words
    relabel = media_type(content_type) == FORM and isinstance(body, (dict, list))
    if isinstance(body, dict) and strip_routing_fields(body, allowed):
        return orjson.dumps(body), relabel
    return raw, relabel
