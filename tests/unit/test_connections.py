"""Storage connections resolved as Azure Functions resolves them, customers' connection
strings parsed once, and the retry policy's reading of Retry-After."""
import email.utils

import pytest

from shared.storage import clients
from shared.storage.connections import (DEVELOPMENT_KEY, InvalidConnection, parse_connection_string, resolve,
                                        sas_account)


def test_development_storage_and_explicit_endpoints():
    local = parse_connection_string("UseDevelopmentStorage=true")
    assert local.name == "devstoreaccount1" and local.key == DEVELOPMENT_KEY
    assert local.endpoint("table") == "http://127.0.0.1:10002/devstoreaccount1"
    explicit = parse_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=acct1;AccountKey=a2V5;"
        "TableEndpoint=http://127.0.0.1:5/acct1/;QueueEndpoint=http://127.0.0.1:6/acct1")
    assert (explicit.endpoint("table"), explicit.endpoint("queue")) == ("http://127.0.0.1:5/acct1",
                                                                        "http://127.0.0.1:6/acct1")
    assert explicit.endpoint("blob") == "http://acct1.blob.core.windows.net" and explicit.key == "a2V5"


def test_endpoints_from_account_and_suffix_and_sas():
    account = parse_connection_string("AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.example.net")
    assert account.endpoint("table") == "https://acct.table.core.example.net"
    by_sas = parse_connection_string("BlobEndpoint=https://acct.blob.core.windows.net;"
                                     "SharedAccessSignature=?sv=1&sig=x")
    assert (by_sas.name, by_sas.key, by_sas.sas) == ("acct", None, "sv=1&sig=x")
    assert by_sas.endpoint_if_any("table") is None
    with pytest.raises(InvalidConnection):
        by_sas.endpoint("table")
    assert sas_account("https://acct.blob.core.windows.net/", "?sv=2&sig=y").sas == "sv=2&sig=y"


OWN = "http://127.0.0.1:10000/devstoreaccount1"


@pytest.mark.parametrize("text", [
    "", "   ", "Foo=bar", "AccountName=acct;AccountKey=not base64!", "AccountName=acct;junk",
    "AccountName=acct;;AccountKey=a2V5",                                      # an empty part
    "AccountName=acct;AccountKey=a2V",                                        # not base64 (padding)
    f"AccountName=acct;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1/x; BlobEndpoint={OWN}",  # doubled key
    f"AccountName=acct;accountname=other;BlobEndpoint={OWN}",                 # doubled, other case
    "AccountName=acct;AccountKey=a2V5;BlobEndpoint=",                         # empty value
    "AccountName=acct;AccountKey=a2V5;BlobEndpoint=http://[::1/",             # not a URL
    "AccountName=acct;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:99999/x", # no such port
    "AccountName=acct;AccountKey=a2V5;BlobEndpoint=ftp://host/x",
    "AccountName=acct;AccountKey=a2V5;BlobEndpoint=http://user@evil.example/x",
    "AccountName=acct;AccountKey=a2V5;BlobEndpoint=http://h.example/x?redirect=1",
    "AccountName=acct;AccountKey=a2V5;DevelopmentStorageProxyUri=http://127.0.0.1:1",  # unknown key
    "AccountName=acct;AccountKey=a2V5;BlobSecondaryEndpoint=http://127.0.0.1:1/x",
    "AccountName=acct;AccountKey=a2V5;EndpointSuffix=evil.example/x",
    "AccountName=acct;AccountKey=a2V5;DefaultEndpointsProtocol=gopher",
    "AccountName=Bad_Name;AccountKey=a2V5",
    "UseDevelopmentStorage=true;BlobEndpoint=http://127.0.0.1:1/x",
    "UseDevelopmentStorage=yes",
    f"BlobEndpoint={OWN};AccountKey=a2V5",                                    # a key needs its account
])
def test_unusable_connection_strings_are_refused(text):
    with pytest.raises(InvalidConnection):
        parse_connection_string(text)


def test_the_portal_forms_parse_with_spaces_and_a_trailing_separator():
    by_key = parse_connection_string(" DefaultEndpointsProtocol=https; AccountName=acct ;AccountKey=a2V5;"
                                     "EndpointSuffix=core.windows.net;")
    assert by_key.endpoint("blob") == "https://acct.blob.core.windows.net" and by_key.key == "a2V5"
    by_sas = parse_connection_string("BlobEndpoint=https://acct.blob.core.windows.net/;FileEndpoint="
                                     "https://acct.file.core.windows.net/;SharedAccessSignature=sv=1&sig=x")
    assert dict(by_sas.endpoints) == {"blob": "https://acct.blob.core.windows.net"} and by_sas.name == "acct"
    emulator = parse_connection_string(f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                                       f"AccountKey=a2V5;BlobEndpoint={OWN}/")
    assert emulator.endpoint("blob") == OWN and emulator.name == "devstoreaccount1"


def test_a_connection_string_setting_wins():
    account = resolve("AzureWebJobsStorage", {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                                              "AzureWebJobsStorage__accountName": "other"})
    assert account.name == "devstoreaccount1" and not account.uses_identity


def test_identity_connection_by_account_name():
    account = resolve("BATCHPOOL_STORAGE", {"BATCHPOOL_STORAGE__accountName": "acct",
                                            "BATCHPOOL_STORAGE__credential": "managedidentity",
                                            "BATCHPOOL_STORAGE__clientId": "00000000-0000-0000-0000-000000000001"})
    assert account.uses_identity and account.key is None and account.sas is None
    assert [account.endpoint(s) for s in ("blob", "queue", "table")] == [
        "https://acct.blob.core.windows.net", "https://acct.queue.core.windows.net",
        "https://acct.table.core.windows.net"]
    assert type(account.credential()).__name__ == "ManagedIdentityCredential"


def test_identity_connection_by_service_uris_names_the_account_from_the_path():
    base = "https://127.0.0.1:4443/devstoreaccount1"
    account = resolve("AzureWebJobsStorage", {f"AzureWebJobsStorage__{s}ServiceUri": f"{base}/"
                                              for s in ("blob", "queue", "table")})
    assert account.name == "devstoreaccount1" and account.endpoint("queue") == base
    assert type(account.credential()).__name__ == "DefaultAzureCredential"


def test_a_missing_connection_says_what_to_set():
    with pytest.raises(InvalidConnection, match="AzureWebJobsStorage__accountName"):
        resolve("AzureWebJobsStorage", {})


def test_retry_after_in_seconds_or_as_a_date_is_capped():
    assert clients.retry_after_seconds({"Retry-After": "2"}) == 2.0
    assert clients.retry_after_seconds({}) is None
    later = email.utils.formatdate(1_000_010, usegmt=True)
    assert clients.retry_after_seconds({"Retry-After": later}, now=1_000_000) == 10.0
    assert clients.retry_after_seconds({"Retry-After": "86400"}) == clients.RETRY_BACKOFF_MAX_SECONDS * 4


class _Answer:
    def __init__(self, headers):
        self.headers = headers


class _Attempt:
    def __init__(self, headers):
        self.http_response = _Answer(headers)


@pytest.mark.parametrize("policy", [clients.BlobRetry, clients.QueueRetry])
def test_blob_and_queue_retries_wait_what_retry_after_asks(policy):
    retry = clients._storage_retry(policy)
    assert retry.get_backoff_time({"count": 1, "history": [_Attempt({"Retry-After": "3"})]}) == 3.0
    fallback = retry.get_backoff_time({"count": 1, "history": [_Attempt({})]})
    assert 0 < fallback <= clients.RETRY_BACKOFF_SECONDS + 2 + clients.RETRY_BACKOFF_SECONDS
