"""Storage clients for the host's own use (queue triggers, timer locks), from AzureWebJobsStorage."""
from __future__ import annotations

from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from devhost.config import ConfigError


def connection_string(settings: dict[str, str]) -> str:
    value = settings.get("AzureWebJobsStorage")
    if not value:
        raise ConfigError("the setting AzureWebJobsStorage is not set: give it a storage connection "
                          "string, or UseDevelopmentStorage=true for Azurite")
    return value


def queue_service(settings: dict[str, str]) -> QueueServiceClient:
    return QueueServiceClient.from_connection_string(connection_string(settings))


def blob_service(settings: dict[str, str]) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(connection_string(settings))
