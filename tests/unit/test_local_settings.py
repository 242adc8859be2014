"""`make run`'s settings: made values are filled in once, and what is there is kept."""
import json

from scripts import local_settings


def test_missing_values_are_made_and_present_ones_kept(tmp_path, capsys):
    path = tmp_path / "local.settings.json"
    assert local_settings.main(path) == 0
    made = json.loads(path.read_text())["Values"]
    assert made["SECRETS_ENCRYPTION_KEYS"] and made["OPERATOR_KEYS"].startswith("local=")
    key = made["OPERATOR_KEYS"].partition("=")[2]
    assert len(key) >= 32 and f"operator key: {key}" in capsys.readouterr().out
    made["OPERATOR_KEYS"] = "ops=" + "k" * 40
    path.write_text(json.dumps({"Values": {**made, "SECRETS_ENCRYPTION_KEYS": ""}}))
    local_settings.main(path)
    again = json.loads(path.read_text())["Values"]
    assert again["OPERATOR_KEYS"] == "ops=" + "k" * 40 and again["SECRETS_ENCRYPTION_KEYS"]
    assert "operator key: " + "k" * 40 in capsys.readouterr().out
