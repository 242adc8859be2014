"""Customers' secrets are sealed in job rows, open under any configured key, and rotate."""
import json

import pytest

from shared import bes, lifecycle, sealing
from shared.errors import InvalidRequest

CONNECTION = ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0LWtleQ==;"
              "EndpointSuffix=core.windows.net")
SAS = "sv=2024-11-04&sr=b&sp=r&se=2030-01-01T00%3A00%3A00Z&sig=abc%2Bdef"


def test_a_stored_request_holds_no_secret_in_plain_text_and_opens_as_it_was():
    request = bes.JobRequest(
        bes.parse_location({"ConnectionString": CONNECTION, "RelativeLocation": "inputs/a.csv"}, "Input"),
        {"output1": bes.parse_location({"BaseLocation": "https://acct.blob.core.windows.net/", "SasBlobToken": SAS,
                                        "RelativeLocation": "outputs/b.csv"}, "Outputs.output1")}, {}, None)
    stored = bes.request_to_stored(request)
    for secret in ("AccountKey=", "sig=", "c2VjcmV0LWtleQ", "abc%2Bdef"):
        assert secret not in json.dumps(stored)
    assert bes.request_from_stored(stored) == request


def test_an_ended_jobs_input_secrets_are_dropped_and_its_outputs_kept_only_while_downloadable():
    request = bes.JobRequest(
        bes.parse_location({"ConnectionString": CONNECTION, "RelativeLocation": "inputs/a.csv"}, "Input"),
        {"output1": bes.parse_location({"ConnectionString": CONNECTION, "RelativeLocation": "outputs/b.csv"},
                                       "Outputs.output1")}, {}, None)
    stored = bes.request_to_stored(request)
    finished = {**stored, **lifecycle.secrets_kept(lifecycle.FINISHED)}
    assert finished[bes.INPUT_SECRETS] == "" and finished[bes.OUTPUT_SECRETS] == stored[bes.OUTPUT_SECRETS]
    assert bes.outputs_from_stored(finished) == request.outputs  # its results can still be signed
    with pytest.raises(InvalidRequest, match="Input"):
        bes.request_from_stored(finished)  # but it can no longer be run
    for status in (lifecycle.FAILED, lifecycle.CANCELLED):
        ended = {**stored, **lifecycle.secrets_kept(status)}
        assert ended[bes.INPUT_SECRETS] == ended[bes.OUTPUT_SECRETS] == ""
        assert bes.outputs_from_stored(ended) == {}


def test_a_new_key_first_seals_and_the_old_one_still_opens(monkeypatch):
    old, new = sealing.new_key(), sealing.new_key()
    monkeypatch.setenv(sealing.SETTING, old)
    sealed_before = sealing.seal("AccountKey=x")
    monkeypatch.setenv(sealing.SETTING, f"{new},{old}")
    sealed_after = sealing.seal("AccountKey=y")
    assert sealing.unseal(sealed_before) == "AccountKey=x" and sealing.unseal(sealed_after) == "AccountKey=y"
    monkeypatch.setenv(sealing.SETTING, new)  # the old key rotated out
    assert sealing.unseal(sealed_after) == "AccountKey=y"
    with pytest.raises(sealing.SealingError, match="does not open"):
        sealing.unseal(sealed_before)


def test_a_tampered_value_does_not_open(monkeypatch):
    monkeypatch.setenv(sealing.SETTING, sealing.new_key())
    sealed = sealing.seal("AccountKey=x")
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(sealing.SealingError):
        sealing.unseal(tampered)


def test_without_a_key_nothing_is_sealed_and_the_setting_is_named(monkeypatch):
    monkeypatch.setenv(sealing.SETTING, "")
    with pytest.raises(sealing.SealingError, match=sealing.SETTING):
        sealing.seal("AccountKey=x")
    monkeypatch.setenv(sealing.SETTING, "not-a-key")
    with pytest.raises(sealing.SealingError, match="32 url-safe"):
        sealing.seal("AccountKey=x")


def test_empty_values_and_values_never_sealed_pass_through():
    assert sealing.seal(None) is None and sealing.seal("") == ""
    assert sealing.unseal("UseDevelopmentStorage=true") == "UseDevelopmentStorage=true"
