"""Model name -> the backends to try, in order: priority (lower first), then weighted random."""

from __future__ import annotations

import random
from collections.abc import Mapping

from ._backends import Backend
from ._config import MODEL_NAME_MAX
from ._errors import BadRequest, ModelNotAllowed, NotFound


class Router:
    """Resolves aliases, applies the allowlist and orders the candidate backends for a model."""

    def __init__(
        self,
        backends: list[Backend],
        aliases: Mapping[str, str],
        allowed: frozenset[str] | None,
    ) -> None:
        self._aliases = dict(aliases)
        self._allowed = allowed
        groups: dict[str, dict[int, list[Backend]]] = {}
        for backend in backends:
            for model in backend.config.models:
                groups.setdefault(model, {}).setdefault(backend.config.priority, []).append(backend)
        # model -> priority groups, lowest priority value first
        self._groups = {model: [by_prio[p] for p in sorted(by_prio)] for model, by_prio in groups.items()}

    def public_models(self) -> list[str]:
        """Every name a client may ask for: served models and aliases, filtered by the allowlist."""
        names = sorted({*self._groups, *self._aliases})
        return [n for n in names if self.is_allowed(n)]

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
