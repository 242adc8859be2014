"""The Table and Queue REST client's pure parts: connection strings, entity JSON, filters,
transaction bodies and answers."""
import base64
import datetime as dt

import pytest

from shared import rest


def test_development_storage_and_explicit_endpoints():
    local = rest.parse_connection_string("UseDevelopmentStorage=true")
    assert local.name == "devstoreaccount1" and local.key == base64.b64decode(rest.DEVELOPMENT_KEY)
    assert local.table_endpoint == "http://127.0.0.1:10002/devstoreaccount1"
    explicit = rest.parse_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=a1;AccountKey=a2V5;"
        "TableEndpoint=http://127.0.0.1:5/a1/;QueueEndpoint=http://127.0.0.1:6/a1")
    assert (explicit.table_endpoint, explicit.queue_endpoint) == ("http://127.0.0.1:5/a1", "http://127.0.0.1:6/a1")
    assert explicit.key == b"key"


def test_endpoints_from_account_and_suffix_and_sas():
    account = rest.parse_connection_string("AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.example.net")
    assert account.table_endpoint == "https://acct.table.core.example.net"
    assert account.queue_endpoint == "https://acct.queue.core.example.net"
    by_sas = rest.parse_connection_string("TableEndpoint=https://acct.table.core.windows.net;"
                                          "QueueEndpoint=https://acct.queue.core.windows.net;"
                                          "SharedAccessSignature=?sv=1&sig=x")
    assert (by_sas.name, by_sas.key, by_sas.sas) == ("acct", None, "sv=1&sig=x")
    with pytest.raises(ValueError):
        rest.parse_connection_string("AccountKey=a2V5")


def test_entity_round_trip_keeps_types():
    moment = dt.datetime(2026, 3, 4, 5, 6, 7, 123000, tzinfo=dt.timezone.utc)
    entity = {"PartitionKey": "p", "RowKey": "r", "Name": "x", "Count": 3, "Big": 2 ** 40, "Ratio": 2.0,
              "Flag": False, "At": moment, "Blob": b"\x00\x01", "Missing": None}
    body = rest.encode_entity(entity)
    assert "Missing" not in body and body["Big"] == str(2 ** 40) and body["Big@odata.type"] == "Edm.Int64"
    assert body["At"] == "2026-03-04T05:06:07.123000Z" and body["Ratio@odata.type"] == "Edm.Double"
    row = rest.decode_entity({**body, "odata.etag": "W/\"1\"", "Timestamp": "2026-03-04T05:06:07.1234567Z"})
    assert row == {k: v for k, v in entity.items() if v is not None}
    assert isinstance(row["Ratio"], float) and row["At"].tzinfo is not None
    assert row.metadata["etag"] == "W/\"1\"" and row.metadata["timestamp"].microsecond == 123456


def test_unsupported_property_type_is_refused():
    with pytest.raises(TypeError):
        rest.encode_entity({"PartitionKey": "p", "RowKey": "r", "Bad": [1]})


def test_keys_and_filters_are_quoted():
    assert rest.key_path("T", "o'k", "a|b c") == "T(PartitionKey='o%27%27k',RowKey='a%7Cb%20c')"
    query = rest.bind_filter("PartitionKey eq @pk and Done eq @done and N lt @n",
                             {"pk": "it's", "done": False, "n": 2 ** 40})
    assert query == "PartitionKey eq 'it''s' and Done eq false and N lt 1099511627776L"


def test_transaction_body_has_one_changeset_of_all_operations():
    content_type, body = rest.batch_body("http://h/acct", [
        rest.BatchOperation("POST", "T", {"PartitionKey": "p", "RowKey": "a"}, None),
        rest.BatchOperation("DELETE", "T(PartitionKey='p',RowKey='b')", None, 'W/"7"')])
    boundary = content_type.split("boundary=")[1]
    text = body.decode()
    assert text.startswith(f"--{boundary}\r\n") and text.endswith(f"--{boundary}--\r\n")
    assert "POST http://h/acct/T HTTP/1.1" in text and "DELETE http://h/acct/T(PartitionKey='p',RowKey='b')" in text
    assert "If-Match: W/\"7\"" in text and text.count("Content-Type: application/http") == 2


def _answer(*parts: str) -> bytes:
    return ("--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_1\r\n\r\n" + "".join(
        f"--changesetresponse_1\r\nContent-Type: application/http\r\n\r\n{part}\r\n" for part in parts)
        + "--changesetresponse_1--\r\n--batchresponse_1--\r\n").encode()


def test_transaction_answer_gives_etags_or_the_failure():
    ok = _answer("HTTP/1.1 204 No Content\r\nETag: W/\"a\"\r\n", "HTTP/1.1 204 No Content\r\n")
    assert rest.parse_batch_response(ok, 2) == (204, ['W/"a"', None], "")
    failed = _answer('HTTP/1.1 412 Precondition Failed\r\nContent-Type: application/json\r\n\r\n'
                     '{"odata.error":{"code":"UpdateConditionNotSatisfied","message":{"value":"1:x"}}}')
    assert rest.parse_batch_response(failed, 2) == (412, [], "UpdateConditionNotSatisfied")


def test_blob_endpoints_by_connection_string_and_by_sas():
    assert rest.parse_connection_string("UseDevelopmentStorage=true").blob_endpoint == \
        "http://127.0.0.1:10000/devstoreaccount1"
    account = rest.parse_connection_string("AccountName=acct;AccountKey=a2V5")
    assert account.blob_endpoint == "https://acct.blob.core.windows.net"
    by_endpoint = rest.parse_connection_string("BlobEndpoint=https://files.example.net/")
    assert (by_endpoint.name, by_endpoint.key, by_endpoint.blob_endpoint) == ("files", None, "https://files.example.net")
    sas = rest.sas_account("https://acct.blob.core.windows.net/", "?sv=1&sig=x")
    assert (sas.name, sas.key, sas.sas, sas.blob_endpoint) == ("acct", None, "sv=1&sig=x", "https://acct.blob.core.windows.net")
