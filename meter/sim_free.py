"""The endpoints that bill nothing (token counting, model listings), answered in each API's
shape. Pure. Counts follow the simulator's input rule (:func:`meter.sim_plan.input_tokens`), so a
count equals the input the same request would be billed for."""

from __future__ import annotations

from typing import Any

from meter.sim_plan import input_tokens
from meter.sim_wire import Reply, json_reply

MODELS = ("sim-model-a", "sim-model-b")
CREATED = 1_767_225_600


def reply(method: str, path: str, body: dict[str, Any], anthropic_client: bool) -> Reply | None:
    """The answer to a free endpoint, or None when nothing answers ``method path`` here."""
    if path.startswith("/v1internal:") and not path.endswith(":countTokens"):
        return _code_assist_session(path)
    if method == "GET":
        return _models(path, anthropic_client)
    if method != "POST":
        return None
    n = input_tokens(body)
    if path.endswith(("/messages/count_tokens", "/count-tokens:rawPredict")):
        return json_reply({"input_tokens": n})
    if path.endswith("/responses/input_tokens"):
        return json_reply({"object": "response.input_tokens", "input_tokens": n})
    if path.endswith(":countTokens"):
        return json_reply({"totalTokens": n, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}]})
    if path.endswith("/count-tokens"):  # Bedrock
        return json_reply({"inputTokens": n})
    return None


CODE_ASSIST_PROJECT = "bbnet-sim-project"


def _code_assist_session(path: str) -> Reply:
    """Code Assist's session calls (what Gemini CLI asks before it generates): an account that has
    a tier and a project already; the rest (experiments, quota, metrics, settings) are empty."""
    if path.endswith(":loadCodeAssist"):
        tier = {"id": "standard-tier", "name": "Gemini Code Assist", "hasOnboardedPreviously": True}
        return json_reply({"currentTier": tier, "allowedTiers": [{**tier, "isDefault": True}],
                           "cloudaicompanionProject": CODE_ASSIST_PROJECT})  # fmt: skip
    return json_reply({})


def _models(path: str, anthropic_client: bool) -> Reply | None:
    """A models listing (``.../models``) or one model (``.../models/ID``)."""
    head, _, last = path.rstrip("/").rpartition("/")
    one = last != "models"
    if one and not head.endswith("/models"):
        return None  # a POST-only free endpoint asked with GET
    if path.startswith(("/v1beta/", "/v1alpha/")):
        if one:
            return json_reply({"name": f"models/{last}", "displayName": last})
        return json_reply({"models": [{"name": f"models/{m}", "displayName": m} for m in MODELS]})
    if anthropic_client:
        if one:
            return json_reply(
                {"type": "model", "id": last, "display_name": last, "created_at": "2026-01-01T00:00:00Z"}
            )
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2026-01-01T00:00:00Z"}
            for m in MODELS
        ]
        return json_reply({"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})
    if one:
        return json_reply({"id": last, "object": "model", "created": CREATED, "owned_by": "bbnet-sim"})
    listing = [{"id": m, "object": "model", "created": CREATED, "owned_by": "bbnet-sim"} for m in MODELS]
    return json_reply({"object": "list", "data": listing})
