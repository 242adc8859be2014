"""Every record of the app names the job, pool and VM it is about, once, in one form."""
import logging

from shared import layout, logfields


def test_fields_are_appended_once_each_where_the_message_lacks_them():
    fields = {"job": "j1", "pool": "nightly", "vm": "vm-000001"}
    assert logfields.with_fields("run claimed", fields, escape=False) == "run claimed job=j1 pool=nightly vm=vm-000001"
    assert logfields.with_fields("run claimed job=%s", fields, escape=True) == \
        "run claimed job=%s pool=nightly vm=vm-000001"
    assert logfields.with_fields("x", {"pool": "100%"}, escape=True) == "x pool=100%%"  # still formats
    assert logfields.with_fields("x", {}, escape=False) == "x"


def test_a_partition_names_its_pool():
    assert logfields.pool_of_partition(layout.pool_partition("sub-1", "nightly")) == "nightly"
    assert logfields.pool_of_partition(layout.CLASSIC_PARTITION) == "classic"
    assert logfields.pool_of_partition(None) is None


def test_records_inside_about_carry_the_fields_and_outside_do_not(caplog):
    log = logging.getLogger("shared.example")
    with caplog.at_level(logging.INFO):
        with logfields.about(job="j1", partition=layout.pool_partition("s", "p1")):
            log.info("run claimed job=%s attempt=%s", "j1", 2)
            logfields.add(vm="vm-000003")
            log.info("handed over rows=%s", 10)
            logging.getLogger("other.library").info("not the app's")
        log.info("outside")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["run claimed job=j1 attempt=2 pool=p1", "handed over rows=10 job=j1 pool=p1 vm=vm-000003",
                        "not the app's", "outside"]
