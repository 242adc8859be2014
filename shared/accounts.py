"""Batch Pool accounts: quotas set by the operator, and the two keys their owner calls with."""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from shared import clock, layout, secrets
from shared.api import ROUTE_PREFIX
from shared.errors import Conflict, NotFound, Unauthorized
from shared.storage import ACCOUNTS, POOLS, get_store, retry_on_conflict
from shared.validation import int_field, only_fields, require_id, str_field, subscription_key
from shared.vms import MAX_VMS_PER_POOL

log = logging.getLogger(__name__)

MAX_POOLS_CEILING = 1000
KEY_NAMES = ("primary", "secondary")
ROW = "account"
# A subscription claimed by a create that never wrote its account is free again after this.
ABANDONED_CLAIM = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class Account:
    account_id: str
    subscription_id: str
    max_pools: int
    max_vms_per_pool: int


def _account(entity) -> Account:
    return Account(entity["PartitionKey"], entity["SubscriptionId"], entity["MaxPools"], entity["MaxVmsPerPool"])


def pool_service_url(base_url: str, account_id: str) -> str:
    return f"{base_url}/{ROUTE_PREFIX}/accounts/{account_id}"


def _view(entity, base_url: str) -> dict:
    return {
        "AccountId": entity["PartitionKey"],
        "SubscriptionId": entity.get("SubscriptionIdAsGiven") or entity["SubscriptionId"],  # as its creator gave it
        "PoolServiceUrl": pool_service_url(base_url, entity["PartitionKey"]),
        "MaxPools": entity["MaxPools"],
        "MaxVmsPerPool": entity["MaxVmsPerPool"],
        "CreatedAt": clock.iso(entity["CreatedAt"]),
    }


def put_account(account_id: str, body: dict, base_url: str):
    """Create the account (201, with its keys) or change its quotas (200, no keys)."""
    require_id(account_id, "accountId")
    only_fields(body, ("SubscriptionId", "MaxPools", "MaxVmsPerPool"))
    given = require_id(str_field(body, "SubscriptionId", 64), "SubscriptionId")
    subscription_id = subscription_key(given)
    max_pools = int_field(body, "MaxPools", 0, MAX_POOLS_CEILING)
    max_vms = int_field(body, "MaxVmsPerPool", 0, MAX_VMS_PER_POOL)
    store = get_store()

    def attempt():
        entity = store.get(ACCOUNTS, account_id, ROW)
        if entity is None:
            _claim_subscription(subscription_id, account_id)
            primary, secondary = secrets.new_key(), secrets.new_key()
            entity = {"PartitionKey": account_id, "RowKey": ROW, "SubscriptionId": subscription_id,
                      "SubscriptionIdAsGiven": given,
                      "MaxPools": max_pools, "MaxVmsPerPool": max_vms, "CreatedAt": clock.utcnow(),
                      "PrimaryKeyHash": secrets.hash_key(primary), "SecondaryKeyHash": secrets.hash_key(secondary)}
            store.insert(ACCOUNTS, entity)
            log.info("account created account=%s subscription=%s", account_id, subscription_id)
            return 201, {**_view(entity, base_url), "PrimaryKey": primary, "SecondaryKey": secondary}
        if entity["SubscriptionId"] != subscription_id:
            raise Conflict(f"account {account_id} belongs to another subscription; an account's "
                           "SubscriptionId cannot change", "SubscriptionMismatch")
        entity["MaxPools"], entity["MaxVmsPerPool"] = max_pools, max_vms
        store.replace(ACCOUNTS, entity)
        log.info("account quotas changed account=%s max_pools=%s max_vms_per_pool=%s",
                 account_id, max_pools, max_vms)
        return 200, _view(entity, base_url)

    return retry_on_conflict(attempt)


def _claim_subscription(subscription_id: str, account_id: str) -> None:
    """Make `account_id` the one account of the subscription, or refuse with 409. The claim is
    written before the account, so a create that stopped half way leaves a claim naming an
    account that does not exist; such a claim is taken over."""
    store = get_store()
    now = clock.utcnow()
    owner = store.get(POOLS, subscription_id, layout.OWNER_ROW)
    if owner is None:
        store.insert(POOLS, {"PartitionKey": subscription_id, "RowKey": layout.OWNER_ROW, "AccountId": account_id,
                             "ClaimedAt": now})
        return
    if owner["AccountId"] == account_id:
        return
    abandoned = now - owner["ClaimedAt"] > ABANDONED_CLAIM and store.get(ACCOUNTS, owner["AccountId"], ROW) is None
    if not abandoned:
        raise Conflict(f"subscription {subscription_id} already has a Batch Pool account; a subscription has "
                       "one account, whose pools any web service of the subscription can use",
                       "SubscriptionHasAccount")
    owner.update({"AccountId": account_id, "ClaimedAt": now})
    store.replace(POOLS, owner)


def get_account(account_id: str, base_url: str) -> dict:
    entity = get_store().get(ACCOUNTS, account_id, ROW) if account_id else None
    if entity is None:
        raise NotFound(f"no account {account_id}", "AccountNotFound")
    return _view(entity, base_url)


def list_accounts(base_url: str) -> dict:
    """Every account, by id (operator)."""
    rows = [row for row in get_store().scan(ACCOUNTS, ROW) if row["RowKey"] == ROW]
    return {"Accounts": [_view(row, base_url) for row in sorted(rows, key=lambda r: r["PartitionKey"])]}


def regenerate_key(account_id: str, key_name: str) -> dict:
    """Replace one key; the old one stops working with this write."""
    if key_name not in KEY_NAMES:
        raise NotFound(f"key name must be primary or secondary, not {key_name!r}", "KeyNotFound")
    store = get_store()

    def attempt():
        entity = store.get(ACCOUNTS, account_id, ROW)
        if entity is None:
            raise NotFound(f"no account {account_id}", "AccountNotFound")
        key = secrets.new_key()
        entity["PrimaryKeyHash" if key_name == "primary" else "SecondaryKeyHash"] = secrets.hash_key(key)
        store.replace(ACCOUNTS, entity)
        return key

    key = retry_on_conflict(attempt)
    log.info("account key regenerated account=%s key=%s", account_id, key_name)
    return {"AccountId": account_id, "KeyName": key_name, "Key": key}


def authenticate(account_id: str, presented: str) -> Account:
    """The account whose primary or secondary key was presented; anything else is 401."""
    entity = get_store().get(ACCOUNTS, account_id, ROW) if account_id else None
    hashes = [entity["PrimaryKeyHash"], entity["SecondaryKeyHash"]] if entity else []
    if not secrets.matches_any(presented, hashes):
        # Unknown accounts and wrong keys answer alike, so account ids cannot be probed.
        raise Unauthorized("the key is not valid for this pool service URL")
    return _account(entity)


