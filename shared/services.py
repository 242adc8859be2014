"""BES web services registered by the operator: their kind, billing plan, scorer and API key."""
from __future__ import annotations

import importlib
import json
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared import attempts, clock, events, schema, secrets
from shared.api import ROUTE_PREFIX
from shared.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from shared.settings import get_settings
from shared.storage import SERVICES, get_store, retry_on_conflict
from shared.swagger import bes_swagger
from shared.validation import int_field, is_valid_id, only_fields, require_id, str_field, subscription_key

log = logging.getLogger(__name__)

NEW, CLASSIC = "New", "Classic"
DEFAULT_INPUTS = ("input1",)
DEFAULT_OUTPUTS = ("output1",)
DEFAULT_TIMEOUT_SECONDS = 3600
MAX_TIMEOUT_SECONDS = 86400
MAX_OUTPUTS = 8
SCORER_PATTERN = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
SWAGGER_PATH = re.compile(rf"/{ROUTE_PREFIX}/subscriptions/([^/]+)/services/([^/]+)/swagger\.json", re.I)


@dataclass(frozen=True)
class ServiceRef:
    subscription_id: str
    service_id: str


@dataclass(frozen=True)
class Service:
    subscription_id: str
    service_id: str
    name: str
    kind: str
    billing_plan_id: str | None
    scorer: str
    input_names: tuple[str, ...] = DEFAULT_INPUTS
    output_names: tuple[str, ...] = DEFAULT_OUTPUTS
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    max_queued_seconds: int | None = None  # no cap
    max_retries: int = attempts.DEFAULT_MAX_RETRIES
    notification_url: str | None = None

    @property
    def ref(self) -> ServiceRef:
        return ServiceRef(self.subscription_id, self.service_id)


def _service(entity) -> Service:
    return Service(entity["PartitionKey"], entity["RowKey"], entity["Name"], entity["Kind"],
                   entity.get("BillingPlanId") or None, entity["Scorer"],
                   tuple(json.loads(entity.get("InputNames") or "null") or DEFAULT_INPUTS),
                   tuple(json.loads(entity.get("OutputNames") or "null") or DEFAULT_OUTPUTS),
                   entity.get("TimeoutSeconds") or DEFAULT_TIMEOUT_SECONDS, entity.get("MaxQueuedSeconds") or None,
                   attempts.max_retries(entity), entity.get("NotificationUrl") or None)


def get_service(subscription_id: str, service_id: str) -> Service | None:
    subscription_id = subscription_key(subscription_id)
    entity = get_store().get(SERVICES, subscription_id, service_id)
    return _service(entity) if entity else None


def service_url(base_url: str, subscription_id: str, service_id: str) -> str:
    return f"{base_url}/{ROUTE_PREFIX}/subscriptions/{subscription_id}/services/{service_id}"


def jobs_url(base_url: str, subscription_id: str, service_id: str, kind: str) -> str:
    """Where a service's BES jobs are called: the classic form for Classic services."""
    if kind == CLASSIC:
        return f"{base_url}/{ROUTE_PREFIX}/workspaces/{subscription_id}/services/{service_id}/jobs"
    return f"{service_url(base_url, subscription_id, service_id)}/jobs"


def _view(entity, base_url: str) -> dict:
    url = service_url(base_url, entity["PartitionKey"], entity["RowKey"])
    service = _service(entity)
    return {"SubscriptionId": entity["PartitionKey"], "ServiceId": entity["RowKey"], "Name": entity["Name"],
            "Kind": entity["Kind"], "BillingPlanId": entity.get("BillingPlanId") or None,
            "Scorer": entity["Scorer"], "InputNames": list(service.input_names),
            "OutputNames": list(service.output_names), "TimeoutSeconds": service.timeout_seconds,
            "MaxQueuedSeconds": service.max_queued_seconds, "MaxRetries": service.max_retries,
            "NotificationUrl": service.notification_url,
            "BatchRequestsUrl": f"{jobs_url(base_url, service.subscription_id, service.service_id, service.kind)}"
                                "?api-version=2.0",
            "SwaggerUrl": f"{url}/swagger.json", "CreatedAt": clock.iso(entity["CreatedAt"])}


def show_service(subscription_id: str, service_id: str, base_url: str) -> dict:
    """A registered service as the operator sees it (its API key is never shown again)."""
    subscription_id = subscription_key(subscription_id)
    entity = get_store().get(SERVICES, subscription_id, service_id)
    if entity is None:
        raise NotFound(f"no web service {service_id} in subscription {subscription_id}", "ServiceNotFound")
    return _view(entity, base_url)


def regenerate_webhook_secret(subscription_id: str, service_id: str) -> dict:
    """A new secret for the service's push events; events sent from now on are signed with it."""
    subscription_id = subscription_key(subscription_id)
    store = get_store()

    def attempt():
        entity = store.get(SERVICES, subscription_id, service_id)
        if entity is None:
            raise NotFound(f"no web service {service_id} in subscription {subscription_id}", "ServiceNotFound")
        entity["WebhookSecret"] = secrets.new_key()
        store.replace(SERVICES, entity)
        log.info("webhook secret regenerated subscription=%s service=%s", subscription_id, service_id)
        return {"SubscriptionId": subscription_id, "ServiceId": service_id, "WebhookSecret": entity["WebhookSecret"]}

    return retry_on_conflict(attempt)


def scorer_allowed(module_name: str, packages: tuple[str, ...]) -> bool:
    """Whether a module is one of the allowed packages or inside one (by name: nothing is
    imported to decide)."""
    return any(module_name == package or module_name.startswith(package + ".") for package in packages)


def check_scorer(scorer: str) -> None:
    """A scorer is `module:function` in a package of SCORER_PACKAGES, importable and callable.
    A module outside those packages is refused before anything imports it."""
    if not SCORER_PATTERN.fullmatch(scorer):
        raise InvalidRequest("Scorer must look like 'package.module:function'", "InvalidScorer")
    module_name, function_name = scorer.split(":")
    packages = get_settings().scorer_packages
    if not scorer_allowed(module_name, packages):
        raise InvalidRequest(f"Scorer module {module_name} is not in the packages this deployment allows "
                             f"(SCORER_PACKAGES: {', '.join(packages)})", "ScorerNotAllowed")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise InvalidRequest(f"Scorer module {module_name} cannot be imported by the app", "InvalidScorer") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise InvalidRequest(f"Scorer module {module_name} has no function {function_name}", "InvalidScorer")
    try:
        schema.declared(function)
    except ValueError as error:
        raise InvalidRequest(f"Scorer {scorer} declares its input wrongly: {error}", "InvalidScorer") from None


def input_columns(scorer: str) -> dict[str, str] | None:
    """The input columns a registered scorer declares (None: none, or it cannot be loaded now)."""
    module_name, _, function_name = scorer.partition(":")
    if not scorer_allowed(module_name, get_settings().scorer_packages):
        return None
    try:
        return schema.declared(getattr(importlib.import_module(module_name), function_name, None))
    except (ImportError, ValueError):
        return None


def _names(body: dict, field: str, default: tuple, most: int) -> list[str]:
    names = body.get(field)
    if names is None:
        return list(default)
    if not isinstance(names, list) or not 1 <= len(names) <= most or len(set(map(str, names))) != len(names) \
            or not all(is_valid_id(n) for n in names):
        raise InvalidRequest(f"{field} must be a list of 1 to {most} distinct names (letters, digits, '-', '_')",
                             "InvalidValue")
    return names


def put_service(subscription_id: str, service_id: str, body: dict, base_url: str):
    """Register a web service (201, with its API key) or change its name, plan or scorer (200)."""
    subscription_id = subscription_key(require_id(subscription_id, "subscriptionId"))
    require_id(service_id, "serviceId")
    only_fields(body, ("Name", "Kind", "BillingPlanId", "Scorer", "InputNames", "OutputNames", "TimeoutSeconds",
                       "MaxQueuedSeconds", "MaxRetries", "NotificationUrl"))
    name = str_field(body, "Name", 128)
    kind = str_field(body, "Kind", choices=(NEW, CLASSIC))
    plan = str_field(body, "BillingPlanId", 64, required=kind == NEW)
    if kind == CLASSIC and plan is not None:
        raise InvalidRequest("a Classic web service has no BillingPlanId; leave it out", "InvalidValue")
    if plan is not None:
        require_id(plan, "BillingPlanId")
    scorer = str_field(body, "Scorer", 200)
    check_scorer(scorer)
    inputs = _names(body, "InputNames", DEFAULT_INPUTS, 1)
    outputs = _names(body, "OutputNames", DEFAULT_OUTPUTS, MAX_OUTPUTS)
    timeout = int_field(body, "TimeoutSeconds", 1, MAX_TIMEOUT_SECONDS, required=False,
                        default=DEFAULT_TIMEOUT_SECONDS)
    shape = {"InputNames": json.dumps(inputs), "OutputNames": json.dumps(outputs), "TimeoutSeconds": timeout,
             "MaxQueuedSeconds": int_field(body, "MaxQueuedSeconds", 1, attempts.MAX_QUEUED_SECONDS_CEILING,
                                           required=False, default=0),
             "MaxRetries": int_field(body, "MaxRetries", 0, attempts.MAX_RETRIES_CEILING, required=False,
                                     default=attempts.DEFAULT_MAX_RETRIES),
             "NotificationUrl": events.check_url(body.get("NotificationUrl"), "NotificationUrl") or ""}
    store = get_store()

    def attempt():
        entity = store.get(SERVICES, subscription_id, service_id)
        if entity is None:
            api_key = secrets.new_key()
            # Kept as it is, not hashed: it signs the service's push events.
            webhook_secret = secrets.new_key()
            entity = {"PartitionKey": subscription_id, "RowKey": service_id, "Name": name, "Kind": kind,
                      "BillingPlanId": plan or "", "Scorer": scorer, "CreatedAt": clock.utcnow(),
                      "ApiKeyHash": secrets.hash_key(api_key), "WebhookSecret": webhook_secret, **shape}
            store.insert(SERVICES, entity)
            log.info("service registered subscription=%s service=%s kind=%s", subscription_id, service_id, kind)
            return 201, {**_view(entity, base_url), "ApiKey": api_key, "WebhookSecret": webhook_secret}
        if entity["Kind"] != kind:
            raise Conflict(f"service {service_id} is {entity['Kind']}; a service's Kind cannot change "
                           "(register a new service instead)", "KindImmutable")
        entity.update({"Name": name, "BillingPlanId": plan or "", "Scorer": scorer, **shape})
        store.replace(SERVICES, entity)
        log.info("service updated subscription=%s service=%s", subscription_id, service_id)
        return 200, _view(entity, base_url)

    return retry_on_conflict(attempt)


def authenticate(subscription_id: str, service_id: str, presented: str) -> Service:
    """The service whose API key was presented; unknown services and wrong keys are both 401."""
    subscription_id = subscription_key(subscription_id)
    entity = None
    if is_valid_id(subscription_id) and is_valid_id(service_id):
        entity = get_store().get(SERVICES, subscription_id, service_id)
    _check_key(presented, entity["ApiKeyHash"] if entity else None)
    assert entity is not None  # a missing service was refused like a wrong key
    _key_hashes_seen(subscription_id, service_id, entity["ApiKeyHash"], entity["Kind"])
    return _service(entity)


def _check_key(presented: str, stored_hash: str | None) -> None:
    if not secrets.matches_any(presented, [stored_hash] if stored_hash else []):
        raise Unauthorized("the API key is not valid for this web service")


# A service's API key and kind never change and a service is never deleted, so its key hash
# and kind are kept per process once read: checking a key then costs no storage request.
_key_hashes: dict[tuple[str, str], tuple[str, str]] = {}
MAX_CACHED_KEYS = 10000


def _key_hashes_seen(subscription_id: str, service_id: str, key_hash: str, kind: str) -> None:
    if len(_key_hashes) >= MAX_CACHED_KEYS:
        _key_hashes.clear()
    _key_hashes[(subscription_id, service_id)] = (key_hash, kind)


def authenticate_key(subscription_id: str, service_id: str, presented: str, classic_form: bool = False
                     ) -> ServiceRef:
    """Check the API key presented for a service (from the per-process cache when it can).
    The classic form of the job API (`/workspaces/...`) serves Classic services only."""
    subscription_id = subscription_key(subscription_id)
    known = _key_hashes.get((subscription_id, service_id))
    if known is None:
        service = authenticate(subscription_id, service_id, presented)
        kind = service.kind
    else:
        _check_key(presented, known[0])
        kind = known[1]
    if classic_form and kind != CLASSIC:
        raise NotFound(f"service {service_id} is a New web service: call it at its BatchRequestsUrl, "
                       f"/{ROUTE_PREFIX}/subscriptions/{subscription_id}/services/{service_id}/jobs",
                       "NotAClassicService")
    return ServiceRef(subscription_id, service_id)


def swagger(service: Service, base_url: str) -> dict:
    """A Swagger 2.0 description of the service's BES job API, naming its billing plan and the
    input columns its scorer reads."""
    return bes_swagger(service, service_url(base_url, service.subscription_id, service.service_id),
                       input_columns(service.scorer))


def resolve_swagger_url(url, base_url: str, subscription_id: str) -> Service:
    """The New web service a pool's ServiceSwaggerUrl names, read from this deployment's own
    registry: the URL is only parsed, never fetched."""
    example = f"{base_url}/{ROUTE_PREFIX}/subscriptions/<subscriptionId>/services/<serviceId>/swagger.json"
    if not isinstance(url, str) or len(url) > 2048:
        raise InvalidRequest(f"ServiceSwaggerUrl must be a URL like {example}", "InvalidServiceSwaggerUrl")
    parts = urlsplit(url)
    match = SWAGGER_PATH.fullmatch(parts.path)
    if parts.scheme not in ("http", "https") or not match or parts.query or parts.fragment \
            or parts.netloc.lower() != urlsplit(base_url).netloc.lower():
        raise InvalidRequest(f"ServiceSwaggerUrl must be the SwaggerUrl of a web service of this deployment, "
                             f"like {example}; other URLs are not accepted (and never fetched)",
                             "InvalidServiceSwaggerUrl")
    service_subscription, service_id = match.groups()
    entity = None
    if subscription_key(service_subscription) == subscription_key(subscription_id) and is_valid_id(service_id):
        entity = get_store().get(SERVICES, subscription_key(subscription_id), service_id)
    if entity is None:
        raise InvalidRequest("ServiceSwaggerUrl names no web service of this account's subscription",
                             "ServiceNotFound")
    service = _service(entity)
    if service.kind != NEW:
        raise InvalidRequest(f"web service {service.service_id} is Classic; a pool needs a New (Resource "
                             "Manager based) web service, whose billing plan the pool is billed to",
                             "ClassicServiceNotAllowed")
    return service


