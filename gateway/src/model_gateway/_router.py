"""Model name -> the backends to try, in order: priority (lower first), then weighted random.

The names a client may ask for are the configured models and aliases plus what each backend
listed at its last successful probe. A listed-only name routes to the backends that listed it,
after those that are configured with it at the same priority; so `GET /v1/models` (rendered here
whenever a probe changes the names, never per request) lists exactly the names that route.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping

from ._backends import Backend
from ._config import MODEL_NAME_MAX
from ._errors import BadRequest, ModelNotAllowed, NotFound

# owned_by for the gateway's own aliases in /v1/models.
ALIAS_OWNER = "llm-canary"


class Router:
    """Resolves aliases, applies the allowlist and orders the candidate backends for a model."""

    def __init__(
        self,
        backends: list[Backend],
        aliases: Mapping[str, str],
        allowed: frozenset[str] | None,
    ) -> None:
        self._backends = backends
        self._aliases = dict(aliases)
        self._allowed = allowed
        # model -> priority groups, lowest priority value first
        self._groups: dict[str, list[list[Backend]]] = {}
        # The whole /v1/models answer.
        self.models_body = b""
        self.rebuild()
        for backend in backends:
            backend.on_listed_change = self.rebuild

    def rebuild(self) -> None:
        """Recompute the routing table and the /v1/models answer from the config and the probes."""
        groups: dict[str, dict[tuple[int, bool], list[Backend]]] = {}
        for backend in self._backends:
            configured = backend.config.models
            for model in dict.fromkeys((*configured, *backend.listed)):
                # Configured before listed-only within one priority.
                key = (backend.config.priority, model not in configured)
                groups.setdefault(model, {}).setdefault(key, []).append(backend)
        self._groups = {model: [by_key[k] for k in sorted(by_key)] for model, by_key in groups.items()}
        self.models_body = self._render_models()

    def _render_models(self) -> bytes:
        owners = {model: groups[0][0].config.kind for model, groups in self._groups.items()}
        owners.update(dict.fromkeys(self._aliases, ALIAS_OWNER))
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": owners[name]}
            for name in sorted(owners)
            if self.is_allowed(name)
        ]
        return json.dumps({"object": "list", "data": data}).encode()

    def is_allowed(self, requested: str) -> bool:
        return self._allowed is None or requested in self._allowed

    def resolve(self, requested: object) -> str:
        """The served model name for what the client asked, or the matching 400/403/404."""
        if not isinstance(requested, str) or not requested:
            raise BadRequest("'model' must be a non-empty string", param="model", code="invalid_model")
        if len(requested) > MODEL_NAME_MAX or not requested.isprintable():
            raise BadRequest(
                f"'model' must be printable and at most {MODEL_NAME_MAX} characters",
                param="model",
                code="invalid_model",
            )
        model = self._aliases.get(requested, requested)
        if model not in self._groups:
            raise NotFound(f"The model '{requested}' does not exist", param="model", code="model_not_found")
        if not self.is_allowed(requested):
            raise ModelNotAllowed(
                f"The model '{requested}' is not allowed here", param="model", code="model_not_allowed"
            )
        return model

    def candidates(self, model: str) -> list[Backend]:
        """Backends for `model` in the order to try them."""
        ordered: list[Backend] = []
        for group in self._groups[model]:
            if len(group) == 1:
                ordered.append(group[0])
            else:
                # Weighted order without replacement (Efraimidis-Spirakis): key u^(1/w), largest first.
                ordered.extend(
                    sorted(group, key=lambda b: random.random() ** (1.0 / b.config.weight), reverse=True)
                )
        return ordered
