"""Allow-list entries are hosts and ports, compared as such, never text patterns."""
import pytest

from shared import allowlist, bes


@pytest.mark.parametrize("entries, url, allowed", [
    # An IPv6 literal entry admits its own address, in any spelling, and nothing else.
    (["[::1]:21900"], "http://[::1]:21900/", True),
    (["[::1]:21900"], "http://[0:0::1]:21900/", True),
    (["[::1]:21900"], "https://1:21900/", False),  # no character classes
    (["[::1]:21900"], "http://[::1]:21901/", False),
    (["::1"], "http://[::1]:5/", True),
    # Names, any case and a trailing dot; a port only when the entry names one.
    (["Receiver.Example"], "https://receiver.example./x", True),
    (["receiver.example"], "https://receiver.example:8443/", True),
    (["receiver.example:8443"], "https://receiver.example/", False),
    (["receiver.example:443"], "https://receiver.example/", True),  # https's own port
    (["receiver.example"], "https://evil-receiver.example/", False),
    (["receiver.example"], "https://receiver.example.evil.test/", False),
    # Subdomains only with a leading "*.", and only below the domain.
    (["*.blob.core.windows.net"], "https://acct.blob.core.windows.net/", True),
    (["*.blob.core.windows.net"], "https://blob.core.windows.net/", False),
    (["*.blob.core.windows.net"], "https://acct.blob.core.windows.net.evil.test/", False),
    (["*.blob.core.windows.net"], "https://acctblob.core.windows.net/", False),
    # Whole endpoints name their host and port.
    (["http://127.0.0.1:10000/devstoreaccount1/"], "http://127.0.0.1:10000/devstoreaccount1", True),
    (["http://127.0.0.1:10000/devstoreaccount1/"], "http://127.0.0.1:9999/x", False),
    (["127.0.0.1"], "http://127.0.0.1:21000/", True),
    ([], "https://anything.example/", False),
])
def test_hosts_and_ports_are_compared_parsed(entries, url, allowed):
    assert bes.host_allowed(url, entries) is allowed


@pytest.mark.parametrize("entry", ["*", "a*b.example", "?.example", "[a-z].example", "*.10.0.0.1", "[::1",
                                   "[::1]x", "host:0", "host:70000", "host:x", "bad_host!.example", "https://"])
def test_entries_that_are_not_hosts_are_refused(entry):
    with pytest.raises(ValueError):
        allowlist.parse_entry(entry)


def test_a_setting_is_parsed_once_with_spaces_and_empty_entries_ignored():
    assert allowlist.parse(" a.example , *.b.example:444 ,, [::1] ") == (
        allowlist.Entry("a.example"), allowlist.Entry("b.example", 444, True), allowlist.Entry("::1"))


def test_a_bad_allowlist_setting_stops_the_settings_with_its_name(monkeypatch):
    from shared import settings
    monkeypatch.setenv("NOTIFICATION_HOST_ALLOWLIST", "receiver.example,[::1")
    with pytest.raises(RuntimeError, match="NOTIFICATION_HOST_ALLOWLIST"):
        settings._allowlist_setting("NOTIFICATION_HOST_ALLOWLIST", "")
