"""llm-canary's model gateway: an OpenAI-compatible proxy with routing, failover, auth and metrics."""

from ._app import GatewayRunner, create_app
from ._config import BackendConfig, ConfigError, Settings, Timeouts, load_settings
from ._main import main, serve

__all__ = [
    "BackendConfig",
    "ConfigError",
    "GatewayRunner",
    "Settings",
    "Timeouts",
    "create_app",
    "load_settings",
    "main",
    "serve",
]
