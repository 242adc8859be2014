"""The Batch Execution Service 2.0 job request: parsing and checking, as pure functions.

A request names blob locations as `ConnectionString` + `RelativeLocation`
("container/path"), or by shared access signature: `BaseLocation` (the blob endpoint) +
`RelativeLocation` + `SasBlobToken`, with or without a connection string. A service reads one
input (`Input`, or `Inputs` with the service's input name) and writes its declared outputs:
where the caller says, or, for outputs it leaves out (`"Outputs": null`), to the app's own
storage under a path of the job's own.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from shared import allowlist, sealing
from shared.attempts import MAX_QUEUED_SECONDS_CEILING, MAX_RETRIES_CEILING
from shared.errors import InvalidRequest
from shared.storage.connections import InvalidConnection, endpoint_url
from shared.storage.connections import parse_connection_string as connection_account
from shared.validation import blob_name_problem, int_field, is_container_name, is_valid_id, near_miss

LOCATION_FIELDS = ("ConnectionString", "BaseLocation", "RelativeLocation", "SasBlobToken")
REQUEST_FIELDS = ("Input", "Inputs", "Outputs", "GlobalParameters", "AzureBatchPoolId", "MaxQueuedSeconds",
                  "MaxRetries", "NotificationUrl")
MAX_GLOBAL_PARAMETERS = 100
# An output the caller leaves to the service is written to the app's own storage account,
# under a path of the job's own; such a location is stored with this marker, not a secret.
OWN_STORAGE = "Own"


@dataclass(frozen=True)
class Location:
    connection_string: str | None
    container: str
    blob: str
    base_location: str | None = None
    sas_token: str | None = None
    own: bool = False  # the app's own storage account

    @property
    def uses_sas(self) -> bool:
        return bool(self.sas_token and self.base_location)

    def to_dict(self) -> dict:
        stored = {"ConnectionString": self.connection_string, "BaseLocation": self.base_location,
                  "RelativeLocation": f"{self.container}/{self.blob}", "SasBlobToken": self.sas_token}
        return {**stored, OWN_STORAGE: True} if self.own else stored


@dataclass(frozen=True)
class JobRequest:
    input: Location
    outputs: dict[str, Location]  # empty: every output goes to the app's own storage
    global_parameters: dict[str, str]
    pool_id: str | None
    # Job policies beside BES's fields (None: the service's default).
    max_queued_seconds: int | None = None
    max_retries: int | None = None
    notification_url: str | None = None  # checked against the deployment's allow-list by the caller


def canonical(fields: dict, names: tuple[str, ...], where: str) -> dict:
    """The object with its known field names spelt as BES spells them (BES matched them
    whatever their case); unknown names are kept as given. The same field twice is refused."""
    spelling = {name.lower(): name for name in names}
    result: dict = {}
    for key, value in fields.items():
        name = spelling.get(key.lower(), key) if isinstance(key, str) else key
        if name in result:
            raise InvalidRequest(f"{where}{name} is given twice (field names are matched whatever their case)",
                                 "DuplicateField", f"{where}{name}")
        result[name] = value
    return result


def _refused(where: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{where}: {message}", "InvalidLocation", where)


def parse_location(value, where: str, stored: bool = False) -> Location:
    """A blob location: ConnectionString + RelativeLocation, or SAS only (ConnectionString null,
    BaseLocation the blob endpoint, RelativeLocation and SasBlobToken). Only a stored request
    may name the app's own storage (a caller never can)."""
    if not isinstance(value, dict):
        raise _refused(where, "must be an object with ConnectionString (or BaseLocation and SasBlobToken) and "
                              "RelativeLocation")
    if stored and value.get(OWN_STORAGE) is True:
        return _own_location(value, where)
    value = canonical(value, LOCATION_FIELDS, "")
    unknown = sorted(set(value) - set(LOCATION_FIELDS))
    if unknown:
        raise _refused(where, f"unknown field(s) {', '.join(map(str, unknown))}; a location takes "
                              f"{', '.join(LOCATION_FIELDS)}")
    connection, base, sas = value.get("ConnectionString"), value.get("BaseLocation"), value.get("SasBlobToken")
    for name, field in (("ConnectionString", connection), ("BaseLocation", base), ("SasBlobToken", sas)):
        if field is not None and not isinstance(field, str):
            raise _refused(f"{where}.{name}", "must be a string or null")
    connection, base, sas = (connection or "").strip() or None, (base or "").strip() or None, \
        (sas or "").strip() or None
    if sas and not base:
        raise _refused(f"{where}.SasBlobToken", "needs a BaseLocation (the blob endpoint)")
    if connection is None and not (base and sas):
        raise _refused(where, "give a ConnectionString, or BaseLocation and SasBlobToken for a blob reached "
                              "by shared access signature")
    if connection is not None:
        try:
            connection_account(connection).endpoint("blob")
        except InvalidConnection as error:
            raise _refused(f"{where}.ConnectionString", str(error)) from None
    if base:
        try:
            endpoint_url(base, "the BaseLocation")
        except InvalidConnection as error:
            raise _refused(f"{where}.BaseLocation", str(error)) from None
    container, blob = _relative(value.get("RelativeLocation"), f"{where}.RelativeLocation")
    return Location(connection, container, blob, base, sas)


def _relative(relative, where: str) -> tuple[str, str]:
    if not isinstance(relative, str) or "/" not in relative.strip("/"):
        raise _refused(where, "must be 'container/path/to/blob'")
    container, _, blob = relative.strip("/").partition("/")
    if not is_container_name(container):
        raise _refused(where, f"'{container}' is not a valid container name (3-63 lower-case letters, digits "
                              "and single hyphens)")
    problem = blob_name_problem(blob)
    if problem:
        raise _refused(where, f"the blob name {problem}")
    return container, blob


def _own_location(value: dict, where: str) -> Location:
    container, blob = _relative(value.get("RelativeLocation"), f"{where}.RelativeLocation")
    return Location(None, container, blob, own=True)


def own_outputs(output_names, container: str, job_id: str, now) -> dict[str, Location]:
    """Where a job's outputs go when its caller leaves them to the service: the app's own
    storage, under `<container>/<yyyy-mm-dd>/<job id>/<output>.csv`."""
    return {name: Location(None, container, f"{now:%Y-%m-%d}/{job_id}/{name}.csv", own=True)
            for name in output_names}


def parse_request(body: dict, input_names: list[str], output_names: list[str]) -> JobRequest:
    """A BES 2.0 job request. Field names are matched whatever their case and unknown top-level
    fields are ignored, as BES did, unless one is a near miss of a known field (a typo would
    otherwise change what the job does unseen); everything else that is wrong is refused."""
    body = canonical(body, REQUEST_FIELDS, "")
    for name in body:
        resembled = near_miss(name, REQUEST_FIELDS) if isinstance(name, str) and name not in REQUEST_FIELDS else None
        if resembled:
            raise InvalidRequest(f"{name} is not a field of a job request; did you mean {resembled}? (other unknown "
                                 "fields are ignored, as BES ignores them)", "UnknownField", name)
    has_input, has_inputs = body.get("Input") is not None, body.get("Inputs") is not None
    if has_input == has_inputs:
        raise InvalidRequest("give the input blob as Input, or as Inputs by name — exactly one of them",
                             "MissingInput" if not has_input else "InvalidRequest", "Inputs")
    if has_input:
        source = parse_location(body["Input"], "Input")
    else:
        inputs = body["Inputs"]
        if isinstance(inputs, dict):
            inputs = canonical(inputs, tuple(input_names), "Inputs.")
        if not isinstance(inputs, dict) or set(inputs) != set(input_names):
            raise InvalidRequest(f"Inputs must name exactly this service's input(s): {', '.join(input_names)}",
                                 "UnknownInput", "Inputs")
        source = parse_location(inputs[input_names[0]], f"Inputs.{input_names[0]}")
    outputs = body.get("Outputs")
    if outputs is not None and not isinstance(outputs, dict):
        raise InvalidRequest(f"Outputs must be an object naming where to write {', '.join(output_names)}, or null "
                             "to have the service keep them", "InvalidOutputs", "Outputs")
    outputs = canonical(outputs or {}, tuple(output_names), "Outputs.")
    unknown = sorted(set(outputs) - set(output_names))
    if unknown:
        raise InvalidRequest(f"unknown output name(s) {', '.join(unknown)}; this service writes "
                             f"{', '.join(output_names)}", "UnknownOutput", "Outputs")
    parsed_outputs = {name: parse_location(location, f"Outputs.{name}") for name, location in outputs.items()}
    targets = [(o.base_location or o.connection_string, o.container, o.blob) for o in parsed_outputs.values()]
    if len(set(targets)) != len(targets):
        raise InvalidRequest("two outputs name the same blob", "InvalidLocation", "Outputs")
    parameters = body.get("GlobalParameters") or {}
    if not isinstance(parameters, dict) or len(parameters) > MAX_GLOBAL_PARAMETERS:
        raise InvalidRequest(f"GlobalParameters must be an object of at most {MAX_GLOBAL_PARAMETERS} entries",
                             "InvalidValue", "GlobalParameters")
    for key, value in parameters.items():
        if isinstance(value, (dict, list)) or value is None:
            raise InvalidRequest(f"GlobalParameters.{key} must be a string, number or boolean", "InvalidValue",
                                 f"GlobalParameters.{key}")
    pool_id = body.get("AzureBatchPoolId")
    if pool_id is not None and not is_valid_id(pool_id):
        raise InvalidRequest("AzureBatchPoolId must be a pool id (1-64 letters, digits, '-' or '_')", "InvalidValue",
                             "AzureBatchPoolId")
    return JobRequest(source, parsed_outputs, {str(k): str(v) for k, v in parameters.items()}, pool_id,
                      int_field(body, "MaxQueuedSeconds", 1, MAX_QUEUED_SECONDS_CEILING, required=False),
                      int_field(body, "MaxRetries", 0, MAX_RETRIES_CEILING, required=False),
                      body.get("NotificationUrl"))


SECRET_FIELDS = ("ConnectionString", "SasBlobToken")
# The job row's columns: the request with no secret in it, and the secrets of its input and
# of its outputs, each sealed (`shared.sealing`), so that each is dropped on its own once it is
# no longer needed (`shared.lifecycle`): the input's when the job ends, the outputs' when its
# results can no longer be downloaded.
REQUEST, INPUT_SECRETS, OUTPUT_SECRETS = "Request", "InputSecrets", "OutputSecrets"


def _secrets_of(location: Location) -> dict:
    stored = location.to_dict()
    return {name: stored[name] for name in SECRET_FIELDS if stored.get(name)}


def _plain(location: Location) -> dict:
    return {**location.to_dict(), **dict.fromkeys(SECRET_FIELDS)}


def _sealed(secrets: dict) -> str:
    return (sealing.seal(json.dumps(secrets)) or "") if any(secrets.values()) else ""


def _opened(sealed: str | None) -> dict:
    return json.loads(sealing.unseal(sealed) or "{}") if sealed else {}


def request_to_stored(request: JobRequest) -> dict:
    """The request as its job's row keeps it: the request's column holds no secret."""
    plain = {"Input": _plain(request.input), "Outputs": {n: _plain(loc) for n, loc in request.outputs.items()},
             "GlobalParameters": request.global_parameters, "AzureBatchPoolId": request.pool_id}
    return {REQUEST: json.dumps(plain), INPUT_SECRETS: _sealed({"Input": _secrets_of(request.input)}),
            OUTPUT_SECRETS: _sealed({n: _secrets_of(loc) for n, loc in request.outputs.items()})}


def _outputs(plain: dict, secrets: dict, kept_only: bool = False) -> dict[str, Location]:
    return {n: parse_location({**loc, **secrets.get(n, {})}, f"Outputs.{n}", stored=True)
            for n, loc in plain["Outputs"].items() if not kept_only or loc.get(OWN_STORAGE) or secrets.get(n)}


def request_from_stored(row: dict) -> JobRequest:
    """The request as the job row keeps it (already checked at submit), its secrets opened;
    refused (InvalidRequest) once they have been dropped."""
    plain = json.loads(row[REQUEST])
    opened = {**plain["Input"], **_opened(row.get(INPUT_SECRETS)).get("Input", {})}
    return JobRequest(parse_location(opened, "Input"), _outputs(plain, _opened(row.get(OUTPUT_SECRETS))),
                      plain.get("GlobalParameters") or {}, plain.get("AzureBatchPoolId"))


def outputs_from_stored(row: dict) -> dict[str, Location]:
    """The outputs as the job row keeps them, their secrets opened; an output whose secrets
    were dropped is left out."""
    return _outputs(json.loads(row[REQUEST]), _opened(row.get(OUTPUT_SECRETS)), kept_only=True)


def host_allowed(endpoint: str, allowed) -> bool:
    """Whether an endpoint's host and port are on an allow-list (`shared.allowlist` entries,
    or their text)."""
    return allowlist.allows(allowlist.parse(allowed), endpoint)


def public_location(location: Location, endpoint: str) -> dict:
    """A location as shown to callers: where it is, never how to get in."""
    return {"BaseLocation": endpoint, "RelativeLocation": f"{location.container}/{location.blob}",
            "SasBlobToken": None, "ConnectionString": None}
