"""Pure rules of jobs: request parsing, FIFO pairing, allowed hosts, job id order."""
import datetime as dt

import pytest

from shared import bes, dispatch, layout, vms
from shared.errors import InvalidRequest

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
CONN = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net"


def location(path="cin/in.csv", **extra):
    return {"ConnectionString": CONN, "RelativeLocation": path, "BaseLocation": None, "SasBlobToken": None, **extra}


def test_parse_seed_style_request():
    request = bes.parse_request({"Input": location(), "Outputs": {"output1": location("out/x/y.csv")},
                                 "GlobalParameters": {"Threshold": 0.7}, "AzureBatchPoolId": "8dfc151b"},
                                ["input1"], ["output1", "output2"])
    assert (request.input.container, request.input.blob) == ("cin", "in.csv")
    assert request.outputs["output1"].blob == "x/y.csv"
    assert request.global_parameters == {"Threshold": "0.7"} and request.pool_id == "8dfc151b"
    assert bes.request_from_stored(bes.request_to_stored(request)) == request


def test_inputs_by_name_and_sas_locations():
    sas = location(BaseLocation="https://acct.blob.core.windows.net/", SasBlobToken="?sv=1&sig=x")
    request = bes.parse_request({"Inputs": {"input1": sas}, "Outputs": {"output1": location("out1/r.csv")}},
                                ["input1"], ["output1"])
    assert request.input.uses_sas and not request.outputs["output1"].uses_sas


@pytest.mark.parametrize("body,code", [
    ({"Outputs": {"output1": location()}}, "MissingInput"),
    ({"Input": location(), "Inputs": {"input1": location()}, "Outputs": {"output1": location()}}, "InvalidRequest"),
    ({"Input": location(), "Outputs": "out/x.csv"}, "InvalidOutputs"),
    ({"Input": location(), "input": location(), "Outputs": None}, "DuplicateField"),
    ({"Input": {"ConnectionString": None, "RelativeLocation": "cin/in.csv"}}, "InvalidLocation"),
    ({"Input": {"BaseLocation": "https://acct.blob.core.windows.net/", "RelativeLocation": "cin/in.csv"}},
     "InvalidLocation"),
    ({"Input": location(), "Outputs": {"output1": {"Own": True, "RelativeLocation": "batchpool-outputs/x.csv"}}},
     "InvalidLocation"),
    ({"Input": location(), "Outputs": {"nope": location()}}, "UnknownOutput"),
    ({"Input": location("UPPER/x"), "Outputs": {"output1": location()}}, "InvalidLocation"),
    ({"Input": location("onlycontainer"), "Outputs": {"output1": location()}}, "InvalidLocation"),
    ({"Input": location(ConnectionString="junk"), "Outputs": {"output1": location()}}, "InvalidLocation"),
    ({"Input": location(ConnectionString="TableEndpoint=https://a.table.core.windows.net;AccountKey=a2V5"),
      "Outputs": {"output1": location()}}, "InvalidLocation"),
    ({"Input": location(), "Outputs": {"output1": location("cout/same.csv"), "output2": location("cout/same.csv")}},
     "InvalidLocation"),
    ({"Input": location(), "Outputs": {"output1": location()}, "GlobalParameters": {"x": None}}, "InvalidValue"),
])
def test_bad_requests(body, code):
    with pytest.raises(InvalidRequest) as raised:
        bes.parse_request(body, ["input1"], ["output1", "output2"])
    assert raised.value.code == code


def test_requests_as_real_clients_send_them():
    """Field names in any case, unknown top-level fields ignored, outputs and parameters null,
    and locations reached by SAS only (ConnectionString null)."""
    sas_only = {"ConnectionString": None, "BaseLocation": "https://acct.blob.core.windows.net/",
                "RelativeLocation": "cin/in.csv", "SasBlobToken": "?sv=1&sig=x"}
    request = bes.parse_request({"input": sas_only, "OUTPUTS": None, "globalParameters": None, "Extra": [1]},
                                ["input1"], ["output1", "output2"])
    assert request.input.uses_sas and request.input.connection_string is None
    assert request.outputs == {} and request.global_parameters == {}
    named = bes.parse_request({"inputs": {"INPUT1": {k.lower(): v for k, v in sas_only.items()}},
                               "Outputs": {"Output2": location("out/b.csv")}}, ["input1"], ["output1", "output2"])
    assert named.input.blob == "in.csv" and list(named.outputs) == ["output2"]


def test_outputs_left_to_the_service_go_to_its_own_storage_and_survive_storage():
    request = bes.parse_request({"Input": location(), "Outputs": None}, ["input1"], ["output1", "output2"])
    own = bes.own_outputs(["output1", "output2"], "batchpool-outputs", "job42", T0)
    assert own["output2"].own and (own["output2"].container, own["output2"].blob) == (
        "batchpool-outputs", "2026-01-01/job42/output2.csv")
    import dataclasses
    stored = bes.request_to_stored(dataclasses.replace(request, outputs=own))
    assert bes.request_from_stored(stored).outputs == own
    assert stored[bes.OUTPUT_SECRETS] == ""  # the app's own outputs need no secret
    assert bes.outputs_from_stored({**stored, bes.INPUT_SECRETS: ""}) == own


def test_public_location_drops_secrets():
    shown = bes.public_location(bes.parse_location(location(), "Input"), "https://acct.blob.core.windows.net/")
    assert "AccountKey" not in str(shown) and shown["ConnectionString"] is None


@pytest.mark.parametrize("endpoint,allowed", [
    ("https://acct.blob.core.windows.net/", True),
    ("http://127.0.0.1:10000/devstoreaccount1", True),
    ("http://127.0.0.1:8080/", False),
    ("http://169.254.169.254/", False),
    ("https://blob.core.windows.net.evil.com/", False),
])
def test_host_allow_list(endpoint, allowed):
    assert bes.host_allowed(endpoint, ["*.blob.core.windows.net", "127.0.0.1:10000"]) is allowed


def vm(ordinal, state=vms.IDLE):
    return {"RowKey": layout.vm_key(ordinal), "VmId": f"vm-{ordinal}", "State": state, "ProvisionedAt": T0}


def test_idle_vms_take_the_oldest_waiting_jobs_in_order():
    heads = [{"JobId": "a"}, {"JobId": "b"}, {"JobId": "c"}]
    pool = [vm(2), vm(0, vms.BUSY), vm(1), vm(3, vms.DRAINING)]
    pairs = dispatch.pair_idle_vms(pool, heads, T0)
    assert [(v["VmId"], h["JobId"]) for v, h in pairs] == [("vm-1", "a"), ("vm-2", "b")]


def test_wait_keys_sort_in_start_order():
    first = layout.wait_key(T0, "zzz")
    later = layout.wait_key(T0 + dt.timedelta(milliseconds=1), "aaa")
    assert first < later and first.startswith(layout.WAIT_PREFIX)
    assert layout.job_of_wait_key(first) == "zzz"


def test_job_ids_sort_newest_first():
    older, newer = layout.new_job_id(T0, None), layout.new_job_id(T0 + dt.timedelta(milliseconds=5), None)
    assert newer < older and len(older) == 30


class _Status:
    def __init__(self, status):
        self.status_code, self.reason, self.headers = status, "reason", {}

    def text(self):
        return ""


@pytest.mark.parametrize("status,transient", [(500, True), (503, True), (429, True), (408, True),
                                              (403, False), (404, False), (409, False), (400, False)])
def test_storage_errors_split_into_transient_and_permanent(status, transient):
    from azure.core.exceptions import HttpResponseError
    from shared.storage import calls
    error = HttpResponseError(message="https://acct.blob.core.windows.net/c/b?sig=secret", response=_Status(status))
    assert calls.is_transient(error) is transient
    described = calls.describe_storage_error(error)
    assert f"status={status}" in described and "sig=" not in described


def test_unreachable_storage_is_transient():
    from azure.core.exceptions import ServiceRequestError
    from shared.storage import calls
    assert calls.is_transient(ServiceRequestError("connection refused"))


def test_a_block_list_lost_to_another_writer_starts_the_run_over():
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob._generated.models import StorageErrorCode
    from shared.storage import calls
    error = HttpResponseError(message="x", response=_Status(400))
    error.error_code = StorageErrorCode.INVALID_BLOCK_LIST
    assert calls.output_replaced(error) and not calls.is_transient(error)
    assert not calls.output_replaced(HttpResponseError(message="x", response=_Status(400)))
    assert calls.describe_storage_error(error) == "status=400 code=InvalidBlockList"


def test_allow_list_entries_may_be_whole_endpoints():
    assert bes.host_allowed("http://127.0.0.1:10000/devstoreaccount1", ["http://127.0.0.1:10000/devstoreaccount1/"])
    assert not bes.host_allowed("http://127.0.0.1:9999/x", ["http://127.0.0.1:10000/devstoreaccount1/"])


@pytest.mark.parametrize("typo, meant", [("AzureBatchPool", "AzureBatchPoolId"), ("AzureBatchPoolID_", "AzureBatchPoolId"),
                                         ("GlobalParameter", "GlobalParameters"), ("output", "Outputs"),
                                         ("notificationurl_", "NotificationUrl"), ("MaxRetrie", "MaxRetries")])
def test_a_near_miss_of_a_request_field_is_refused_naming_the_field_it_resembles(typo, meant):
    body = {"Input": {"ConnectionString": "UseDevelopmentStorage=true", "RelativeLocation": "inputs/a.csv"}, typo: "x"}
    with pytest.raises(InvalidRequest) as refused:
        bes.parse_request(body, ["input1"], ["output1"])
    assert refused.value.target == typo and f"did you mean {meant}?" in refused.value.message


def test_unrelated_unknown_fields_stay_ignored():
    body = {"Input": {"ConnectionString": "UseDevelopmentStorage=true", "RelativeLocation": "inputs/a.csv"},
            "ClientRequestId": "abc", "Tags": {"team": "x"}, "Priority": 3}
    assert bes.parse_request(body, ["input1"], ["output1"]).input.blob == "a.csv"


def test_edit_distance_counts_up_to_its_limit():
    from shared.validation import edit_distance
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("abc", "abc") == 0
    assert edit_distance("abc", "abd") == 1 and edit_distance("a", "abcdef") == 3
