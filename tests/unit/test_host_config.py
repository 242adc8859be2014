"""What the host reads from host.json and function.json, and what it refuses."""
import base64
import json
import os
import textwrap

import pytest

from devhost.config import ConfigError, QueueOptions, load_function, load_host_config, parse_timespan
from devhost.keys import HostKeys
from devhost.queues import MIN_POLLING_INTERVAL, decode_body, next_polling_delay


def make_app(tmp_path, function_json: dict, code: str, host: dict | None = None, name: str = "Fn"):
    (tmp_path / "host.json").write_text(json.dumps(host or {"version": "2.0"}))
    folder = tmp_path / name
    folder.mkdir()
    (folder / "function.json").write_text(json.dumps(function_json))
    (folder / "__init__.py").write_text(textwrap.dedent(code))
    return folder


def http_function(**trigger):
    return {"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req", **trigger},
                         {"type": "http", "direction": "out", "name": "$return"}]}


def test_http_defaults(tmp_path):
    folder = make_app(tmp_path, http_function(), "def main(req):\n    return None\n")
    spec = load_function(tmp_path, folder, load_host_config(tmp_path))
    assert spec.auth_level == "function"  # the host's default
    assert spec.route.template == "Fn"  # default route: the function's name
    assert "GET" in spec.methods and "DELETE" in spec.methods
    assert spec.returns_http


def test_binding_without_parameter_is_refused(tmp_path):
    folder = make_app(tmp_path, http_function(), "def main(request):\n    return None\n")
    with pytest.raises(ConfigError, match="binding 'req'.*no matching parameter"):
        load_function(tmp_path, folder, load_host_config(tmp_path))


def test_parameter_without_binding_is_refused(tmp_path):
    folder = make_app(tmp_path, http_function(), "def main(req, extra):\n    return None\n")
    with pytest.raises(ConfigError, match="extra"):
        load_function(tmp_path, folder, load_host_config(tmp_path))


def test_unknown_trigger_is_refused(tmp_path):
    spec = {"bindings": [{"type": "cosmosDBTrigger", "direction": "in", "name": "docs"}]}
    folder = make_app(tmp_path, spec, "def main(docs):\n    pass\n")
    with pytest.raises(ConfigError, match="cosmosDBTrigger"):
        load_function(tmp_path, folder, load_host_config(tmp_path))


def test_bad_schedule_is_refused(tmp_path):
    spec = {"bindings": [{"type": "timerTrigger", "direction": "in", "name": "timer", "schedule": "0 * * * *"}]}
    folder = make_app(tmp_path, spec, "def main(timer):\n    pass\n")
    with pytest.raises(ConfigError, match="bad schedule"):
        load_function(tmp_path, folder, load_host_config(tmp_path))


def test_bad_queue_name_and_auth_level_are_refused(tmp_path):
    spec = {"bindings": [{"type": "queueTrigger", "direction": "in", "name": "msg", "queueName": "Bad_Name"}]}
    folder = make_app(tmp_path, spec, "def main(msg):\n    pass\n")
    with pytest.raises(ConfigError, match="queueName"):
        load_function(tmp_path, folder, load_host_config(tmp_path))
    other = make_app(tmp_path, http_function(authLevel="system"), "def main(req):\n    pass\n", name="Other")
    with pytest.raises(ConfigError, match="authLevel"):
        load_function(tmp_path, other, load_host_config(tmp_path))


def test_host_json_needs_version_2(tmp_path):
    (tmp_path / "host.json").write_text(json.dumps({"version": "1.0"}))
    with pytest.raises(ConfigError, match="2.0"):
        load_host_config(tmp_path)


def test_queue_options_defaults_and_overrides():
    defaults = QueueOptions.from_host_json({})
    cores = os.cpu_count() or 1
    assert (defaults.batch_size, defaults.new_batch_threshold, defaults.max_dequeue_count) == (16, 8 * cores, 5)
    assert defaults.max_polling_interval == 60 and defaults.visibility_timeout == 0
    assert defaults.message_encoding == "base64"
    custom = QueueOptions.from_host_json({"batchSize": 4, "maxPollingInterval": 2000, "visibilityTimeout": "00:00:30",
                                          "maxDequeueCount": 2, "messageEncoding": "none"})
    assert (custom.batch_size, custom.new_batch_threshold, custom.max_polling_interval) == (4, 2 * cores, 2.0)
    assert (custom.visibility_timeout, custom.max_dequeue_count, custom.message_encoding) == (30, 2, "none")
    for bad in ({"batchSize": 33}, {"batchSize": 0}, {"maxDequeueCount": True}, {"messageEncoding": "utf8"},
                {"visibilityTimeout": "thirty"}):
        with pytest.raises(ConfigError):
            QueueOptions.from_host_json(bad)


def test_timespans():
    assert parse_timespan("00:01:30", "x") == 90
    assert parse_timespan("1.00:00:00", "x") == 86400
    assert parse_timespan(1500, "x") == 1.5


def test_message_decoding():
    assert decode_body(base64.b64encode(b'{"a": 1}').decode(), "base64") == b'{"a": 1}'
    assert decode_body("plain text", "none") == b"plain text"
    with pytest.raises(ValueError):
        decode_body("not base64!", "base64")


def test_polling_back_off_doubles_up_to_the_ceiling():
    delay, seen = MIN_POLLING_INTERVAL, []
    for _ in range(12):
        delay = next_polling_delay(delay, 2.0, rng=lambda: 0.5)
        seen.append(delay)
    assert seen[:3] == pytest.approx([0.2, 0.4, 0.8])
    assert max(seen) == 2.0 and seen[-1] == 2.0


def test_keys_by_auth_level():
    keys = HostKeys("master", "function")
    assert keys.allows("anonymous", None)
    assert keys.allows("function", "function") and keys.allows("function", "master")
    assert not keys.allows("function", None) and not keys.allows("function", "wrong")
    assert keys.allows("admin", "master") and not keys.allows("admin", "function")


def test_schedule_from_an_app_setting(tmp_path):
    spec = {"bindings": [{"type": "timerTrigger", "direction": "in", "name": "timer", "schedule": "%MY_SCHEDULE%"}]}
    folder = make_app(tmp_path, spec, "def main(timer):\n    pass\n")
    loaded = load_function(tmp_path, folder, load_host_config(tmp_path), {"MY_SCHEDULE": "*/5 * * * * *"})
    assert loaded.schedule.expression == "*/5 * * * * *"
    with pytest.raises(ConfigError, match="MY_SCHEDULE"):
        load_function(tmp_path, folder, load_host_config(tmp_path), {})
