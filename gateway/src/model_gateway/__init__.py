"""llm-canary's model gateway: an OpenAI-compatible proxy with routing, failover, auth and metrics."""

from ._app import Gateway
from ._config import BackendConfig, ConfigError, Settings, Timeouts, load_settings
from ._main import main, serve

__all__ = [
    "BackendConfig",
    "ConfigError",
    "Gateway",
    "Settings",
    "Timeouts",
    "load_settings",
    "main",
    "serve",
]
