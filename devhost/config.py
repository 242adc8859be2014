"""Reading a function app folder: host.json, local.settings.json and each function.json.

Everything the host cannot honour is refused here, before anything starts, with a
message naming the file and what to change.
"""
from __future__ import annotations

import datetime as dt
import importlib.util
import inspect
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from devhost import ncrontab
from devhost.routes import RouteTemplate, RouteTemplateError

AUTH_LEVELS = ("anonymous", "function", "admin")
HTTP_METHODS = ("get", "post", "put", "delete", "patch", "head", "options", "trace")
SUPPORTED_TRIGGERS = ("httpTrigger", "queueTrigger", "timerTrigger")
SUPPORTED_OUTPUTS = ("http", "queue")


class ConfigError(Exception):
    """The app folder holds something the host cannot honour."""


def parse_timespan(value, what: str) -> float:
    """host.json durations: "hh:mm:ss[.fff]", "d.hh:mm:ss" or, for polling, milliseconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected a duration, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value) / 1000.0
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)", str(value))
    if not match:
        raise ConfigError(f"{what}: '{value}' is not a duration like 00:00:30")
    days, hours, minutes, seconds = match.groups()
    return dt.timedelta(days=int(days or 0), hours=int(hours), minutes=int(minutes),
                        seconds=float(seconds)).total_seconds()


@dataclass
class QueueOptions:
    """`extensions.queues` of host.json, with the host's documented defaults."""
    batch_size: int = 16
    new_batch_threshold: int = field(default_factory=lambda: default_new_batch_threshold(16))
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @classmethod
    def from_host_json(cls, section: dict) -> "QueueOptions":
        options = cls()
        if "batchSize" in section:
            options.batch_size = _bounded_int(section["batchSize"], 1, 32, "queues.batchSize")
        options.new_batch_threshold = default_new_batch_threshold(options.batch_size)
        if "newBatchThreshold" in section:
            options.new_batch_threshold = _bounded_int(section["newBatchThreshold"], 0, 1000,
                                                       "queues.newBatchThreshold")
        if "maxPollingInterval" in section:
            options.max_polling_interval = parse_timespan(section["maxPollingInterval"],
                                                          "queues.maxPollingInterval")
            if options.max_polling_interval < 0.1:
                raise ConfigError("queues.maxPollingInterval must be at least 100 ms")
        if "visibilityTimeout" in section:
            options.visibility_timeout = parse_timespan(section["visibilityTimeout"],
                                                        "queues.visibilityTimeout")
        if "maxDequeueCount" in section:
            options.max_dequeue_count = _bounded_int(section["maxDequeueCount"], 1, 1000,
                                                     "queues.maxDequeueCount")
        if "messageEncoding" in section:
            encoding = str(section["messageEncoding"]).lower()
            if encoding not in ("base64", "none"):
                raise ConfigError("queues.messageEncoding must be 'base64' or 'none'")
            options.message_encoding = encoding
        return options


def default_new_batch_threshold(batch_size: int) -> int:
    """The storage queues extension's default: (batchSize / 2) x processor count."""
    return batch_size // 2 * (os.cpu_count() or 1)


def _bounded_int(value, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{what} must be a whole number from {low} to {high}, got {value!r}")
    return value


@dataclass
class HostConfig:
    route_prefix: str = "api"
    queues: QueueOptions = field(default_factory=QueueOptions)
    function_timeout: float | None = None
    host_id: str = "devhost"


@dataclass
class Binding:
    name: str
    type: str
    direction: str
    raw: dict


@dataclass
class FunctionSpec:
    name: str
    folder: Path
    trigger: Binding
    outputs: list[Binding]
    entry: Callable[..., Any] | None = None  # set once the function's script is imported
    returns_http: bool = False
    takes_context: bool = False  # a parameter named `context` gets the invocation's Context
    route: RouteTemplate | None = None
    methods: tuple[str, ...] = ()
    auth_level: str = "function"
    schedule: ncrontab.Schedule | None = None


def load_host_config(app_root: Path) -> HostConfig:
    path = app_root / "host.json"
    if not path.is_file():
        raise ConfigError(f"{path} is missing: every function app needs a host.json")
    data = _read_json(path)
    if str(data.get("version")) != "2.0":
        raise ConfigError(f"{path}: \"version\" must be \"2.0\"")
    extensions = data.get("extensions") or {}
    config = HostConfig()
    http = extensions.get("http") or {}
    if "routePrefix" in http:
        config.route_prefix = str(http["routePrefix"]).strip("/")
    config.queues = QueueOptions.from_host_json(extensions.get("queues") or {})
    if data.get("functionTimeout") not in (None, "-1"):
        config.function_timeout = parse_timespan(data["functionTimeout"], "functionTimeout")
    # The real host derives its id from the site name; a folder name stands in for it.
    config.host_id = str(data.get("id") or re.sub(r"[^a-z0-9-]", "", app_root.resolve().name.lower())
                         or "devhost")[:32]
    return config


def load_settings(app_root: Path) -> dict[str, str]:
    """Values of local.settings.json; the process environment wins, as with Core Tools."""
    path = app_root / "local.settings.json"
    values: dict[str, str] = {}
    if path.is_file():
        data = _read_json(path)
        if data.get("IsEncrypted"):
            raise ConfigError(f"{path}: encrypted settings are not supported; set IsEncrypted to false")
        values = {str(k): str(v) for k, v in (data.get("Values") or {}).items()}
    values.update({k: v for k, v in os.environ.items() if k in values or k.startswith("AzureWebJobs")})
    return values


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: cannot be read as JSON ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a JSON object")
    return data


def _import_script(app_root: Path, name: str, script: Path) -> ModuleType:
    # The Python worker imports each function as a submodule of the
    # `__app__` namespace, with the app root on sys.path so `import shared` works.
    if str(app_root) not in sys.path:
        sys.path.insert(0, str(app_root))
    module_name = f"__app__.{name}" if script.name == "__init__.py" else f"__app__.{name}.{script.stem}"
    if "__app__" not in sys.modules:
        package = ModuleType("__app__")
        package.__path__ = [str(app_root)]
        sys.modules["__app__"] = package
    if script.name != "__init__.py" and f"__app__.{name}" not in sys.modules:
        package = ModuleType(f"__app__.{name}")
        package.__path__ = [str(script.parent)]
        sys.modules[f"__app__.{name}"] = package
    spec = importlib.util.spec_from_file_location(
        module_name, script,
        submodule_search_locations=[str(script.parent)] if script.name == "__init__.py" else None)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{script}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _resolve_settings(raw: dict, settings: dict[str, str], path: Path) -> dict:
    """Binding properties written as %NAME% take the value of app setting NAME, as in Azure."""
    resolved = dict(raw)
    for key in ("schedule", "queueName"):
        value = raw.get(key)
        if isinstance(value, str) and len(value) > 2 and value.startswith("%") and value.endswith("%"):
            name = value[1:-1]
            setting = settings.get(name) or os.environ.get(name)
            if not setting:
                raise ConfigError(f"{path}: {key} names app setting {name} (as %{name}%), which is not set")
            resolved[key] = setting
    return resolved


def load_function(app_root: Path, folder: Path, config: HostConfig,
                  settings: dict[str, str] | None = None) -> FunctionSpec:
    path = folder / "function.json"
    data = _read_json(path)
    bindings = data.get("bindings")
    if not isinstance(bindings, list) or not bindings:
        raise ConfigError(f"{path}: \"bindings\" must be a non-empty list")
    parsed = []
    for raw in bindings:
        if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) for k in ("name", "type", "direction")):
            raise ConfigError(f"{path}: every binding needs string \"name\", \"type\" and \"direction\"")
        raw = _resolve_settings(raw, settings or {}, path)
        parsed.append(Binding(raw["name"], raw["type"], raw["direction"], raw))
    triggers = [b for b in parsed if b.type.endswith("Trigger")]
    if len(triggers) != 1:
        raise ConfigError(f"{path}: a function needs exactly one trigger binding, found {len(triggers)}")
    trigger = triggers[0]
    if trigger.type not in SUPPORTED_TRIGGERS:
        raise ConfigError(f"{path}: trigger type '{trigger.type}' is not supported "
                          f"(supported: {', '.join(SUPPORTED_TRIGGERS)})")
    outputs = [b for b in parsed if b is not trigger]
    for binding in outputs:
        if binding.direction != "out" or binding.type not in SUPPORTED_OUTPUTS:
            raise ConfigError(f"{path}: binding '{binding.name}' ({binding.type}, {binding.direction}) "
                              f"is not supported; outputs may be {', '.join(SUPPORTED_OUTPUTS)}")
        if binding.type == "http" and trigger.type != "httpTrigger":
            raise ConfigError(f"{path}: an http output needs an httpTrigger")
        if binding.type == "queue" and not binding.raw.get("queueName"):
            raise ConfigError(f"{path}: queue output '{binding.name}' needs a queueName")
    spec = FunctionSpec(name=folder.name, folder=folder, trigger=trigger, outputs=outputs)
    _check_trigger(spec, path, config)
    _load_entry_point(app_root, spec, data, path)
    return spec


def _check_trigger(spec: FunctionSpec, path: Path, config: HostConfig) -> None:
    raw = spec.trigger.raw
    if spec.trigger.type == "httpTrigger":
        spec.auth_level = str(raw.get("authLevel", "function")).lower()
        if spec.auth_level not in AUTH_LEVELS:
            raise ConfigError(f"{path}: authLevel '{raw.get('authLevel')}' must be one of {', '.join(AUTH_LEVELS)}")
        methods = raw.get("methods") or list(HTTP_METHODS)
        if not isinstance(methods, list) or any(str(m).lower() not in HTTP_METHODS for m in methods):
            raise ConfigError(f"{path}: methods must be a list of HTTP methods")
        spec.methods = tuple(str(m).upper() for m in methods)
        try:
            spec.route = RouteTemplate(str(raw.get("route") or spec.name))
        except RouteTemplateError as error:
            raise ConfigError(f"{path}: {error}") from None
    elif spec.trigger.type == "queueTrigger":
        queue = raw.get("queueName", "")
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}", str(queue)):
            raise ConfigError(f"{path}: queueName '{queue}' is not a valid queue name "
                              "(3-63 lower-case letters, digits and single hyphens)")
    elif spec.trigger.type == "timerTrigger":
        try:
            spec.schedule = ncrontab.parse(str(raw.get("schedule", "")))
        except ncrontab.ScheduleError as error:
            raise ConfigError(f"{path}: bad schedule: {error}") from None


def _load_entry_point(app_root: Path, spec: FunctionSpec, data: dict, path: Path) -> None:
    script = spec.folder / data.get("scriptFile", "__init__.py")
    if not script.is_file():
        raise ConfigError(f"{path}: scriptFile {script.name} does not exist")
    module = _import_script(app_root, spec.name, script)
    entry_name = data.get("entryPoint", "main")
    entry = getattr(module, entry_name, None)
    if not callable(entry):
        raise ConfigError(f"{script}: has no function '{entry_name}' (the entryPoint)")
    parameters = inspect.signature(entry).parameters
    spec.returns_http = any(b.name == "$return" and b.type == "http" for b in spec.outputs)
    for binding in [spec.trigger, *spec.outputs]:
        if binding.name == "$return":
            continue
        if binding.name not in parameters:
            raise ConfigError(f"{script}: binding '{binding.name}' of function.json has no matching "
                              f"parameter in {entry_name}({', '.join(parameters)})")
    bound = {b.name for b in [spec.trigger, *spec.outputs]}
    spec.takes_context = "context" in parameters and "context" not in bound
    bound.add("context")
    unbound = [p for p in parameters if p not in bound and parameters[p].default is inspect.Parameter.empty]
    if unbound:
        raise ConfigError(f"{script}: parameter(s) {', '.join(unbound)} of {entry_name} "
                          "have no binding in function.json")
    spec.entry = entry


def load_functions(app_root: Path, config: HostConfig, settings: dict[str, str] | None = None
                   ) -> tuple[list[FunctionSpec], dict[str, str]]:
    """The functions that can run, and why each other one cannot (by name). As in Azure, a
    function whose function.json or code cannot be honoured is disabled, the others run."""
    folders = sorted(p for p in app_root.iterdir() if (p / "function.json").is_file())
    if not folders:
        raise ConfigError(f"{app_root}: no function folders (folders holding function.json) found")
    functions, errors = [], {}
    for folder in folders:
        try:
            functions.append(load_function(app_root, folder, config, settings))
        except ConfigError as error:
            errors[folder.name] = str(error)
        except Exception as error:  # the function's code failed to import
            errors[folder.name] = f"{folder.name}: its code failed to load: {type(error).__name__}: {error}"
    return functions, errors
