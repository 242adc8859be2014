"""Runs last among the end-to-end tests: after everything above, no secret leaked.

Every key the service issued may appear only in the response that issued it; no key, API
key, storage account key or host key may appear in any host log line.
"""
from devhost.azurite import ACCOUNT_KEY
from tests.e2e.harness import ISSUED, RESPONSES


def test_issued_secrets_appear_only_in_their_issuing_response():
    assert len(ISSUED) > 20 and len(RESPONSES) > 500
    for secret, issuer in ISSUED.items():
        seen_in = [i for i, text in enumerate(RESPONSES) if secret in text]
        assert seen_in == [issuer], f"a secret issued by response {issuer} also appeared in {seen_in}"
    for text in RESPONSES:
        assert ACCOUNT_KEY not in text and "AccountKey=" not in text


def test_no_secret_reaches_a_log_line(logs_dir, app_host):
    logs = sorted(logs_dir.glob("*host*.log"))
    assert logs, "no host logs were written"
    secrets = [*ISSUED, ACCOUNT_KEY, app_host.master_key, app_host.function_key]
    for log in logs:
        for number, line in enumerate(log.read_text(errors="replace").splitlines(), start=1):
            assert "AccountKey=" not in line and "SharedAccessSignature" not in line, f"{log.name}:{number}"
            assert not any(secret in line for secret in secrets), f"{log.name}:{number} holds a secret"
