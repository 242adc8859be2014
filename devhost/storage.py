"""Storage clients for the host's own use (queue triggers, timer locks), from the
`AzureWebJobsStorage` connection as the Functions host resolves it: a connection string, or
an identity-based connection (`__accountName`, or `__queueServiceUri` and `__blobServiceUri`,
with `__credential=managedidentity` and `__clientId`)."""
from __future__ import annotations

from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from devhost.config import ConfigError

CONNECTION = "AzureWebJobsStorage"


def _identity_section(settings: dict[str, str]) -> dict[str, str]:
    prefix = f"{CONNECTION}__"
    return {key[len(prefix):].lower(): value for key, value in settings.items() if key.startswith(prefix) and value}


def _service_url(section: dict[str, str], service: str) -> str:
    url = section.get(f"{service}serviceuri")
    if url:
        return url
    if section.get("accountname"):
        return f"https://{section['accountname']}.{service}.core.windows.net"
    raise ConfigError(f"the setting {CONNECTION} is not set: give it a storage connection string "
                      f"(UseDevelopmentStorage=true for Azurite), or {CONNECTION}__accountName or "
                      f"{CONNECTION}__{service}ServiceUri for an identity-based connection")


def _credential(section: dict[str, str]):
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
    if section.get("credential", "").lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=section.get("clientid"))
    return DefaultAzureCredential(managed_identity_client_id=section.get("clientid"))


def _client(kind, service: str, settings: dict[str, str]):
    if settings.get(CONNECTION):
        return kind.from_connection_string(settings[CONNECTION])
    section = _identity_section(settings)
    return kind(_service_url(section, service), credential=_credential(section))


def queue_service(settings: dict[str, str]) -> QueueServiceClient:
    return _client(QueueServiceClient, "queue", settings)


def blob_service(settings: dict[str, str]) -> BlobServiceClient:
    return _client(BlobServiceClient, "blob", settings)
