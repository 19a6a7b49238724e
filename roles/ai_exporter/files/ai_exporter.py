#!/usr/bin/python3
"""ai-exporter: Prometheus metrics for the model runtimes on this host.

    ai_model_loaded{backend, model}       1 when the runtime has the model in memory, else 0
    ai_memory_used_bytes{device}          GPU memory (NVML, device="gpu0"...) or host memory
    ai_memory_total_bytes{device}         (device="host") when no GPU is present
    ai_runtime_up{backend}                1 when the runtime answered its status endpoints

Model state comes from what the runtimes report, never from loading a model: Ollama's
/api/ps (loaded) and /api/tags (pulled), llama.cpp's /health (200 once its one model is loaded)
and /props (the model's name). Every scrape asks afresh, each request with a short timeout, so a
runtime that hangs costs a scrape at most `timeout_s` per request.

Configuration: one JSON file (argv[1], default /etc/ai-exporter/config.json), parsed once at start:

    {"listen_address": "10.128.0.3", "port": 9101, "timeout_s": 2.0, "gpu": "auto",
     "runtimes": [{"kind": "ollama", "url": "http://10.128.0.3:11434", "models": ["qwen2.5:0.5b"]},
                  {"kind": "llamacpp", "url": "http://10.128.0.3:8080", "model": "SmolLM2",
                   "api_key": "..."}]}
"""

from __future__ import annotations

import ctypes
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily

DEFAULT_CONFIG = "/etc/ai-exporter/config.json"
RUNTIME_KINDS = ("ollama", "llamacpp")
GPU_MODES = ("auto", "off")


class ConfigError(ValueError):
    """The configuration file is missing, not JSON, or names a bad value."""


@dataclass(frozen=True)
class Runtime:
    kind: str
    url: str
    # Ollama: models expected on the host (reported 0 until pulled and loaded).
    # llama.cpp: the one served model, by the name clients use.
    models: tuple[str, ...] = ()
    api_key: str = ""


@dataclass(frozen=True)
class Config:
    listen_address: str
    port: int
    timeout_s: float = 2.0
    gpu: str = "auto"
    runtimes: tuple[Runtime, ...] = field(default_factory=tuple)


def parse_config(data: object) -> Config:
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a JSON object")
    try:
        runtimes = tuple(_parse_runtime(i, r) for i, r in enumerate(data.get("runtimes", [])))
        config = Config(
            listen_address=str(data["listen_address"]),
            port=int(data["port"]),
            timeout_s=float(data.get("timeout_s", 2.0)),
            gpu=str(data.get("gpu", "auto")),
            runtimes=runtimes,
        )
    except KeyError as missing:
        raise ConfigError(f"missing key {missing}") from None
    except (TypeError, ValueError) as bad:
        raise ConfigError(str(bad)) from None
    if config.gpu not in GPU_MODES:
        raise ConfigError(f"gpu must be one of {GPU_MODES}, got {config.gpu!r}")
    if not 0 < config.port < 65536:
        raise ConfigError(f"port must be 1-65535, got {config.port}")
    return config


def _parse_runtime(index: int, raw: dict) -> Runtime:
    kind = raw.get("kind")
    if kind not in RUNTIME_KINDS:
        raise ConfigError(f"runtimes[{index}].kind must be one of {RUNTIME_KINDS}, got {kind!r}")
    if not str(raw.get("url", "")).startswith(("http://", "https://")):
        raise ConfigError(f"runtimes[{index}].url must be an http(s) URL, got {raw.get('url')!r}")
    models = tuple(raw.get("models", ())) if kind == "ollama" else tuple(m for m in [raw.get("model")] if m)
    return Runtime(kind=kind, url=raw["url"].rstrip("/"), models=models, api_key=str(raw.get("api_key", "")))


def load_config(path: str) -> Config:
    try:
        with open(path, encoding="utf-8") as stream:
            return parse_config(json.load(stream))
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not JSON: {error}") from None


@dataclass(frozen=True)
class Reply:
    """One runtime answer: status (0 when nothing answered) and JSON body (None if not JSON)."""

    status: int
    body: object = None


def fetch(url: str, timeout_s: float, api_key: str = "") -> Reply:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (OSError, ValueError):
        return Reply(status=0)
    try:
        return Reply(status=status, body=json.loads(raw))
    except ValueError:
        return Reply(status=status)


@dataclass(frozen=True)
class RuntimeState:
    up: bool
    # model name -> loaded
    models: dict[str, bool]


def ollama_state(runtime: Runtime, timeout_s: float) -> RuntimeState:
    ps = fetch(f"{runtime.url}/api/ps", timeout_s)
    tags = fetch(f"{runtime.url}/api/tags", timeout_s)
    models = dict.fromkeys(runtime.models, False)
    if tags.status == 200 and isinstance(tags.body, dict):
        models.update(dict.fromkeys((m["name"] for m in tags.body.get("models") or []), False))
    if ps.status == 200 and isinstance(ps.body, dict):
        models.update(dict.fromkeys((m["name"] for m in ps.body.get("models") or []), True))
    return RuntimeState(up=ps.status == 200, models=models)


def llamacpp_state(runtime: Runtime, timeout_s: float) -> RuntimeState:
    health = fetch(f"{runtime.url}/health", timeout_s)
    # 200 once the model is loaded, 503 while it loads; no answer when the server is down.
    loaded = health.status == 200
    names = list(runtime.models)
    if loaded:
        props = fetch(f"{runtime.url}/props", timeout_s, runtime.api_key)
        if props.status == 200 and isinstance(props.body, dict) and props.body.get("model_alias"):
            names = [str(props.body["model_alias"])]
    return RuntimeState(up=health.status in (200, 503), models=dict.fromkeys(names, loaded))


STATE_READERS = {"ollama": ollama_state, "llamacpp": llamacpp_state}


@dataclass(frozen=True)
class Memory:
    device: str
    used: int
    total: int


class _NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class _NvmlMemoryV2(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint),
        ("total", ctypes.c_ulonglong),
        ("reserved", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    ]


# NVML_STRUCT_VERSION(Memory, 2): the struct's size with the version in the top byte.
_NVML_MEMORY_V2 = ctypes.sizeof(_NvmlMemoryV2) | (2 << 24)


class Nvml:
    """GPU memory through NVML (libnvidia-ml.so.1, installed with the NVIDIA driver)."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._lib = library
        if self._lib.nvmlInit_v2() != 0:
            raise OSError("nvmlInit_v2 failed")

    @classmethod
    def open(cls) -> Nvml | None:
        """NVML when a driver and at least one GPU are present, else None."""
        try:
            nvml = cls(ctypes.CDLL("libnvidia-ml.so.1"))
        except OSError:
            return None
        return nvml if nvml.device_count() > 0 else None

    def device_count(self) -> int:
        count = ctypes.c_uint(0)
        return count.value if self._lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0 else 0

    def memory(self) -> list[Memory]:
        result = []
        for index in range(self.device_count()):
            handle = ctypes.c_void_p()
            if self._lib.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle)) != 0:
                continue
            memory = self._device_memory(handle)
            if memory is not None:
                result.append(Memory(device=f"gpu{index}", used=memory[0], total=memory[1]))
        return result

    def _device_memory(self, handle: ctypes.c_void_p) -> tuple[int, int] | None:
        """(used, total) bytes. The v2 call leaves the driver's reservation out of `used`, as
        nvidia-smi does; the v1 call (older drivers) counts it as used."""
        info_v2 = _NvmlMemoryV2(version=_NVML_MEMORY_V2)
        get_v2 = getattr(self._lib, "nvmlDeviceGetMemoryInfo_v2", None)
        if get_v2 is not None and get_v2(handle, ctypes.byref(info_v2)) == 0:
            return info_v2.used, info_v2.total
        info = _NvmlMemory()
        if self._lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(info)) == 0:
            return info.used, info.total
        return None


def host_memory(meminfo: str = "/proc/meminfo") -> list[Memory]:
    values = {}
    with open(meminfo, encoding="ascii") as stream:
        for line in stream:
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) * 1024
    total = values["MemTotal"]
    return [Memory(device="host", used=total - values["MemAvailable"], total=total)]


class Collector:
    """Asks every runtime and the memory source on each scrape."""

    def __init__(self, config: Config, nvml: Nvml | None) -> None:
        self._config = config
        self._nvml = nvml

    def collect(self) -> Iterator[GaugeMetricFamily]:
        loaded = GaugeMetricFamily(
            "ai_model_loaded", "1 when the runtime has the model loaded", labels=["backend", "model"]
        )
        up = GaugeMetricFamily("ai_runtime_up", "1 when the runtime answered", labels=["backend"])
        for runtime in self._config.runtimes:
            state = STATE_READERS[runtime.kind](runtime, self._config.timeout_s)
            up.add_metric([runtime.kind], 1 if state.up else 0)
            for model, is_loaded in sorted(state.models.items()):
                loaded.add_metric([runtime.kind, model], 1 if is_loaded else 0)
        used = GaugeMetricFamily("ai_memory_used_bytes", "Memory in use (GPU, or host)", labels=["device"])
        total = GaugeMetricFamily("ai_memory_total_bytes", "Memory size (GPU, or host)", labels=["device"])
        for memory in self._nvml.memory() if self._nvml else host_memory():
            used.add_metric([memory.device], memory.used)
            total.add_metric([memory.device], memory.total)
        yield from (loaded, up, used, total)


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else DEFAULT_CONFIG
    try:
        config = load_config(path)
    except ConfigError as error:
        print(f"ai-exporter: configuration error: {error}", file=sys.stderr)
        return 2
    nvml = Nvml.open() if config.gpu == "auto" else None
    REGISTRY.register(Collector(config, nvml))
    start_http_server(config.port, addr=config.listen_address)
    print(
        f"ai-exporter: serving on {config.listen_address}:{config.port}, "
        f"memory from {'NVML' if nvml else '/proc/meminfo'}, runtimes: "
        f"{', '.join(r.kind for r in config.runtimes) or 'none'}",
        file=sys.stderr,
        flush=True,
    )
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
