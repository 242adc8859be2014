"""The Batch Execution Service 2.0 job request: parsing and checking, as pure functions.

A request names blob locations as `ConnectionString` + `RelativeLocation`
("container/path"), optionally with `BaseLocation` and `SasBlobToken` (then the blob is
reached at BaseLocation + RelativeLocation + SasBlobToken). A service reads one input
(`Input`, or `Inputs` with the service's input name) and writes any of its declared outputs.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import InvalidRequest
from shared.storage.connections import InvalidConnection, endpoint_url
from shared.storage.connections import parse_connection_string as connection_account
from shared.validation import is_valid_id, only_fields

CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
LOCATION_FIELDS = ("ConnectionString", "BaseLocation", "RelativeLocation", "SasBlobToken")
REQUEST_FIELDS = ("Input", "Inputs", "Outputs", "GlobalParameters", "AzureBatchPoolId")
MAX_GLOBAL_PARAMETERS = 100


@dataclass(frozen=True)
class Location:
    connection_string: str
    container: str
    blob: str
    base_location: str | None = None
    sas_token: str | None = None

    @property
    def uses_sas(self) -> bool:
        return bool(self.sas_token and self.base_location)

    def to_dict(self) -> dict:
        return {"ConnectionString": self.connection_string, "BaseLocation": self.base_location,
                "RelativeLocation": f"{self.container}/{self.blob}", "SasBlobToken": self.sas_token}


@dataclass(frozen=True)
class JobRequest:
    input: Location
    outputs: dict[str, Location]
    global_parameters: dict[str, str]
    pool_id: str | None


def parse_location(value, where: str) -> Location:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where} must be an object with ConnectionString and RelativeLocation", "InvalidLocation")
    unknown = sorted(set(value) - set(LOCATION_FIELDS))
    if unknown:
        raise InvalidRequest(f"{where} has unknown field(s) {', '.join(unknown)}; a location takes "
                             f"{', '.join(LOCATION_FIELDS)}", "InvalidLocation")
    connection = value.get("ConnectionString")
    base, sas = value.get("BaseLocation"), value.get("SasBlobToken")
    for name, field in (("BaseLocation", base), ("SasBlobToken", sas)):
        if field is not None and not isinstance(field, str):
            raise InvalidRequest(f"{where}.{name} must be a string or null", "InvalidLocation")
    if not isinstance(connection, str) or not connection.strip():
        raise InvalidRequest(f"{where}.ConnectionString must be a storage connection string", "InvalidLocation")
    try:
        connection_account(connection).endpoint("blob")
    except InvalidConnection as error:
        raise InvalidRequest(f"{where}.ConnectionString: {error}", "InvalidLocation") from None
    if base:
        try:
            endpoint_url(base, f"{where}.BaseLocation")
        except InvalidConnection as error:
            raise InvalidRequest(str(error), "InvalidLocation") from None
    if sas and not base:
        raise InvalidRequest(f"{where}.SasBlobToken needs a BaseLocation (the blob endpoint)", "InvalidLocation")
    relative = value.get("RelativeLocation")
    if not isinstance(relative, str) or "/" not in relative.strip("/"):
        raise InvalidRequest(f"{where}.RelativeLocation must be 'container/path/to/blob'", "InvalidLocation")
    container, _, blob = relative.strip("/").partition("/")
    if not CONTAINER.fullmatch(container):
        raise InvalidRequest(f"{where}.RelativeLocation: '{container}' is not a valid container name "
                             "(3-63 lower-case letters, digits and single hyphens)", "InvalidLocation")
    if len(blob) > 1024 or any(ord(c) < 32 for c in blob):
        raise InvalidRequest(f"{where}.RelativeLocation: the blob name is not valid", "InvalidLocation")
    return Location(connection, container, blob, base or None, sas or None)


def parse_request(body: dict, input_names: list[str], output_names: list[str]) -> JobRequest:
    only_fields(body, REQUEST_FIELDS)
    has_input, has_inputs = body.get("Input") is not None, body.get("Inputs") is not None
    if has_input == has_inputs:
        raise InvalidRequest("give the input blob as Input, or as Inputs by name — exactly one of them",
                             "MissingInput" if not has_input else "InvalidRequest")
    if has_input:
        source = parse_location(body["Input"], "Input")
    else:
        inputs = body["Inputs"]
        if not isinstance(inputs, dict) or set(inputs) != set(input_names):
            raise InvalidRequest(f"Inputs must name exactly this service's input(s): {', '.join(input_names)}",
                                 "UnknownInput")
        source = parse_location(inputs[input_names[0]], f"Inputs.{input_names[0]}")
    outputs = body.get("Outputs")
    if not isinstance(outputs, dict) or not outputs:
        raise InvalidRequest(f"Outputs is required: an object naming where to write "
                             f"{', '.join(output_names)}", "MissingOutput")
    unknown = sorted(set(outputs) - set(output_names))
    if unknown:
        raise InvalidRequest(f"unknown output name(s) {', '.join(unknown)}; this service writes "
                             f"{', '.join(output_names)}", "UnknownOutput")
    parsed_outputs = {name: parse_location(location, f"Outputs.{name}") for name, location in outputs.items()}
    targets = [(o.container, o.blob) for o in parsed_outputs.values()]
    if len(set(targets)) != len(targets):
        raise InvalidRequest("two outputs name the same blob", "InvalidLocation")
    parameters = body.get("GlobalParameters") or {}
    if not isinstance(parameters, dict) or len(parameters) > MAX_GLOBAL_PARAMETERS:
        raise InvalidRequest(f"GlobalParameters must be an object of at most {MAX_GLOBAL_PARAMETERS} entries",
                             "InvalidValue")
    for key, value in parameters.items():
        if isinstance(value, (dict, list)) or value is None:
            raise InvalidRequest(f"GlobalParameters.{key} must be a string, number or boolean", "InvalidValue")
    pool_id = body.get("AzureBatchPoolId")
    if pool_id is not None and not is_valid_id(pool_id):
        raise InvalidRequest("AzureBatchPoolId must be a pool id (1-64 letters, digits, '-' or '_')", "InvalidValue")
    return JobRequest(source, parsed_outputs, {str(k): str(v) for k, v in parameters.items()}, pool_id)


def request_from_stored(stored: dict) -> JobRequest:
    """The request as kept in the job row (already checked at submit)."""
    return JobRequest(parse_location(stored["Input"], "Input"),
                      {n: parse_location(l, f"Outputs.{n}") for n, l in stored["Outputs"].items()},
                      stored.get("GlobalParameters") or {}, stored.get("AzureBatchPoolId"))


def request_to_stored(request: JobRequest) -> dict:
    return {"Input": request.input.to_dict(), "Outputs": {n: l.to_dict() for n, l in request.outputs.items()},
            "GlobalParameters": request.global_parameters, "AzureBatchPoolId": request.pool_id}


def _as_pattern(allowed: str) -> str:
    """An allow-list entry as a host[:port] pattern (entries may also be whole endpoints)."""
    if "://" in allowed:
        parts = urlsplit(allowed)
        return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
    return allowed


def host_allowed(endpoint: str, allowed: list[str]) -> bool:
    """Whether a blob endpoint's host[:port] matches one of the allowed entries."""
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    with_port = f"{host}:{parts.port}" if parts.port else host
    patterns = [_as_pattern(entry).lower() for entry in allowed]
    return any(fnmatch.fnmatch(with_port, p) or fnmatch.fnmatch(host, p) for p in patterns)


def public_location(location: Location, endpoint: str) -> dict:
    """A location as shown to callers: where it is, never how to get in."""
    return {"BaseLocation": endpoint, "RelativeLocation": f"{location.container}/{location.blob}",
            "SasBlobToken": None, "ConnectionString": None}
