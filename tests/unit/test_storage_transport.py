"""The shared storage transport and the SDKs' loggers, without storage: what importing
`shared.storage.clients` does to logging, and the size of the blocks blob bodies are read in."""
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import requests
import urllib3
from azure.core.rest import HttpRequest

from shared.storage import clients
from shared.storage.connections import parse_connection_string

ROOT = Path(__file__).resolve().parents[2]
KIB = 1024
SDK_LOGGERS = ("azure", "azure.core.pipeline.policies.http_logging_policy", "azure.storage.blob",
               "azure.data.tables")

_PROBE = """
import json, logging, sys
sys.path.insert(0, sys.argv[1])
logging.basicConfig(level=logging.INFO)  # as the Functions worker has it: every INFO record is sent on
logging.getLogger("shared.jobs").setLevel(logging.DEBUG)
names = ("", "shared", "shared.jobs", "shared.storage.calls")
before = {name: logging.getLogger(name).level for name in names}
import shared.storage.clients
print(json.dumps({"before": before, "after": {name: logging.getLogger(name).level for name in names},
                  "sdk": {name: logging.getLogger(name).getEffectiveLevel() for name in json.loads(sys.argv[2])},
                  "app": {name: logging.getLogger(name).getEffectiveLevel() for name in names}}))
"""


def test_importing_the_clients_quiets_the_sdk_loggers_and_nothing_else():
    # A fresh interpreter, so that this import is the first and nothing else set a level.
    probe = subprocess.run([sys.executable, "-c", _PROBE, str(ROOT), json.dumps(SDK_LOGGERS)], capture_output=True,
                           text=True, timeout=120, check=True)
    seen = json.loads(probe.stdout)
    assert all(level >= logging.WARNING for level in seen["sdk"].values()), seen["sdk"]
    assert seen["after"] == seen["before"]  # the root logger and the app's own keep their levels
    assert seen["app"][""] == logging.INFO
    assert seen["app"]["shared.jobs"] == logging.DEBUG
    assert seen["app"]["shared.storage.calls"] == logging.INFO  # the app's loggers follow the root's, as before


def test_the_sdk_loggers_have_a_level_of_their_own_whatever_the_roots():
    assert clients.USER_AGENT  # imported above: that is what sets the level
    assert logging.getLogger("azure").level >= logging.WARNING
    for name in SDK_LOGGERS:
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name


def _blob_body(size: int) -> requests.Response:
    """A requests response whose body is still to be read, as `stream=True` leaves it."""
    raw = requests.Response()
    raw.status_code = 200
    raw.headers["Content-Length"] = str(size)
    raw.raw = urllib3.HTTPResponse(body=io.BytesIO(b"x" * size), headers={"Content-Length": str(size)},
                                   status=200, preload_content=False)
    return raw


def _send(transport, request, answer: requests.Response):
    """`transport.send` as the SDKs call it, with the session answering `answer`."""
    real = transport.session.request
    transport.session.request = lambda *args, **kwargs: answer
    try:
        return transport.send(request, stream=True)
    finally:
        transport.session.request = real


def test_the_shared_transport_reads_blob_bodies_in_the_storage_sdks_block_size():
    from azure.storage.blob._shared.constants import DATA_BLOCK_SIZE as BLOB_SDK_BLOCK

    assert BLOB_SDK_BLOCK == 256 * KIB  # what the blob SDK gives a transport it builds itself
    transport = clients.shared_transport()
    assert transport.connection_config.data_block_size == 256 * KIB
    response = _send(transport, HttpRequest("GET", "http://127.0.0.1:1/devstoreaccount1/c/b"),
                     _blob_body(600 * KIB))
    # How the generated blob operations read a download: response.stream_download(pipeline).
    chunks = [len(chunk) for chunk in response.stream_download(None)]
    assert chunks == [256 * KIB, 256 * KIB, 88 * KIB]


def _account():
    return parse_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;QueueEndpoint=http://127.0.0.1:2/devstoreaccount1;"
        "TableEndpoint=http://127.0.0.1:3/devstoreaccount1;")


def _transport_of(client):
    transport = client._client._client._pipeline._transport if hasattr(client, "_client") else None
    transport = transport or client._pipeline._transport
    while hasattr(transport, "_transport"):  # the SDKs wrap it so that a child client cannot close it
        transport = transport._transport
    return transport


def test_every_client_including_a_blobs_is_built_on_the_one_transport():
    account = _account()
    blobs = clients.blob_service(account)
    for client in (blobs, blobs.get_blob_client("c", "b"), clients.queue_service(account),
                   clients.table_service(account)):
        assert _transport_of(client) is clients.shared_transport()


def test_storage_that_cannot_be_reached_or_drops_the_connection_answers_503():
    import pytest
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    from shared.errors import StorageUnavailable
    from shared.storage.calls import storage_guard

    def failing(error):
        def call():
            raise error
        return call

    for error in (ServiceRequestError("refused"), ServiceResponseError("dropped")):
        with pytest.raises(StorageUnavailable):
            storage_guard(failing(error))
    busy = HttpResponseError("busy")
    busy.status_code = 503
    with pytest.raises(StorageUnavailable):
        storage_guard(failing(busy))
    refused = HttpResponseError("no")
    refused.status_code = 409
    with pytest.raises(HttpResponseError):
        storage_guard(failing(refused))
