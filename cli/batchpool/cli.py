"""`batchpool`: the Batch Pool command line.

Exit codes: 0 done; 1 the job did not finish (a followed job ended Failed or Cancelled, or
`jobs download` of a job that has not finished); 2 a bad command line or a missing setting;
3 the service or the storage refused the request (4xx); 4 the service or the storage failed or
could not be reached (5xx, no answer); 130 interrupted; 141 standard output was closed early
(a pipe such as `| head` ended).
"""
from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from batchpool import render
from batchpool.client import (
    TERMINAL,
    ApiError,
    BatchPoolError,
    JobsClient,
    OperatorClient,
    PoolClient,
    Unreachable,
    download,
    jobs_endpoint,
    mask,
)
from batchpool.config import SECRETS, SETTINGS, ConfigError, Settings

OK, JOB_DID_NOT_FINISH, USAGE, REFUSED, UNAVAILABLE, INTERRUPTED, PIPE_CLOSED = 0, 1, 2, 3, 4, 130, 141
CONTAINER_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")


class Context:
    """What every command needs: settings, how to print, and the clients."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.settings = Settings(args.profile or os.environ.get("BATCHPOOL_PROFILE") or "default",
                                 {"base_url": args.base_url, "account": getattr(args, "account", None),
                                  "subscription": getattr(args, "subscription", None),
                                  "service": getattr(args, "service", None)})
        self.json = args.output == "json"
        self.trace = (lambda line: print(line, file=sys.stderr)) if args.verbose else None

    def emit(self, value: Any, text: Callable[[Any], str]) -> None:
        print(render.as_json(value) if self.json else text(value))

    def note(self, line: str) -> None:
        """A remark for people, kept off standard output in JSON mode."""
        print(line, file=sys.stderr if self.json else sys.stdout)

    def base(self) -> str:
        return self.settings.need("base_url", "the service's address").rstrip("/")

    def operator(self) -> OperatorClient:
        return OperatorClient(self.base(), self.settings.need(
            "operator_key", "an operator key, or an Entra ID access token with the operator role"), self.trace)

    def pools(self) -> PoolClient:
        url = self.settings.get("pool_service_url")
        if not url or self.args.account or self.args.base_url:  # a flag beats what is saved
            url = f"{self.base()}/api/accounts/{self.settings.need('account', 'the account id')}"
        return PoolClient(url, self.settings.need("account_key", "a key of the account"), self.trace)

    def jobs(self) -> JobsClient:
        url = self.settings.get("batch_requests_url")
        if not url or self.args.service or self.args.subscription or self.args.base_url:
            url = (f"{self.base()}/api/subscriptions/{self.settings.need('subscription', 'the subscription id')}"
                   f"/services/{self.settings.need('service', 'the web service id')}/jobs")
        return JobsClient(url, self.settings.need("api_key", "the web service's API key"), self.trace)

    def keep(self, values: dict[str, str | None]) -> str:
        path = self.settings.save(values)
        return f"profile '{self.settings.profile}' in {path}"


def _hidden(record: dict, secrets: dict[str, str], where: str) -> dict:
    """A record with the keys it carried replaced by where they were saved."""
    return {name: (f"saved to {where}" if name in secrets else value) for name, value in record.items()}


# ---- configure --------------------------------------------------------------------------------


def configure(ctx: Context) -> int:
    args = ctx.args
    values = {name: getattr(args, name) for name in SETTINGS if getattr(args, name, None)}
    if getattr(args, "base_url", None):
        values["base_url"] = args.base_url
    for name in args.set or []:
        if name not in SETTINGS:
            raise ConfigError(f"unknown setting {name}; one of {', '.join(SETTINGS)}")
        if sys.stdin.isatty():
            value = getpass.getpass(f"{name} (not shown): ")
        else:
            value = sys.stdin.readline()
        if not value.strip():
            raise ConfigError(f"no value given for {name}")
        values[name] = value.strip()
    if values:
        ctx.note(f"saved {', '.join(sorted(values))} to {ctx.keep(values)}")
    ctx.emit(ctx.settings.shown(), lambda shown: render.fields(shown, list(shown)))
    return OK


# ---- operator ---------------------------------------------------------------------------------

ACCOUNT_FIELDS = ["AccountId", "SubscriptionId", "PoolServiceUrl", "MaxPools", "MaxVmsPerPool", "CreatedAt"]
SERVICE_FIELDS = ["ServiceId", "SubscriptionId", "Name", "Kind", "BillingPlanId", "Scorer", "OutputNames",
                  "TimeoutSeconds", "BatchRequestsUrl", "SwaggerUrl", "CreatedAt"]


def accounts_create(ctx: Context) -> int:
    args = ctx.args
    created = ctx.operator().create_account(args.account_id, args.subscription, args.max_pools, args.max_vms_per_pool)
    secrets = {}
    if "PrimaryKey" in created:
        secrets = {"PrimaryKey": created["PrimaryKey"], "SecondaryKey": created["SecondaryKey"]}
    where = ctx.keep({"account": created["AccountId"], "pool_service_url": created["PoolServiceUrl"],
                      "subscription": created["SubscriptionId"],
                      **({"account_key": secrets["PrimaryKey"], "account_secondary_key": secrets["SecondaryKey"]}
                         if secrets else {})})
    shown = _hidden(created, secrets, where)
    ctx.emit(shown, lambda r: render.fields(r, list(r)))
    return OK


def accounts_show(ctx: Context) -> int:
    account = ctx.operator().get_account(ctx.args.account_id or ctx.settings.need("account", "the account id"))
    ctx.emit(account, lambda r: render.fields(r, ACCOUNT_FIELDS))
    return OK


def accounts_list(ctx: Context) -> int:
    accounts = ctx.operator().list_accounts()
    ctx.emit(accounts, lambda rows: render.table(rows, [("ACCOUNT", "AccountId"), ("SUBSCRIPTION", "SubscriptionId"),
                                                        ("MAX POOLS", "MaxPools"), ("MAX VMS/POOL", "MaxVmsPerPool"),
                                                        ("CREATED", "CreatedAt")]))
    return OK


def accounts_regenerate_key(ctx: Context) -> int:
    args = ctx.args
    account_id = args.account_id or ctx.settings.need("account", "the account id")
    answer = ctx.operator().regenerate_key(account_id, args.key)
    setting = "account_key" if args.key == "primary" else "account_secondary_key"
    where = ctx.keep({setting: answer["Key"], "account": account_id})
    ctx.emit(_hidden(answer, {"Key": answer["Key"]}, where), lambda r: render.fields(r, list(r)))
    return OK


def services_create(ctx: Context) -> int:
    args = ctx.args
    subscription = ctx.settings.need("subscription", "the subscription id")
    created = ctx.operator().create_service(subscription, args.service_id, args.name or args.service_id, args.scorer,
                                            args.kind, args.billing_plan, args.timeout,
                                            notification_url=args.notification_url, max_retries=args.max_retries,
                                            max_queued_seconds=args.max_queued_seconds)
    secrets = {name: created[name] for name in ("ApiKey", "WebhookSecret") if created.get(name)}
    where = ctx.keep({"subscription": subscription, "service": created["ServiceId"],
                      "batch_requests_url": jobs_endpoint(created["BatchRequestsUrl"]),
                      **({"api_key": secrets["ApiKey"]} if "ApiKey" in secrets else {}),
                      **({"webhook_secret": secrets["WebhookSecret"]} if "WebhookSecret" in secrets else {})})
    ctx.emit(_hidden(created, secrets, where), lambda r: render.fields(r, list(r)))
    return OK


def services_regenerate_webhook_secret(ctx: Context) -> int:
    subscription = ctx.settings.need("subscription", "the subscription id")
    service_id = ctx.args.service_id or ctx.settings.need("service", "the web service id")
    answer = ctx.operator().regenerate_webhook_secret(subscription, service_id)
    where = ctx.keep({"webhook_secret": answer["WebhookSecret"]})
    ctx.emit(_hidden(answer, {"WebhookSecret": answer["WebhookSecret"]}, where), lambda r: render.fields(r, list(r)))
    return OK


def services_show(ctx: Context) -> int:
    service = ctx.operator().get_service(ctx.settings.need("subscription", "the subscription id"),
                                         ctx.args.service_id or ctx.settings.need("service", "the web service id"))
    ctx.emit(service, lambda r: render.fields(r, SERVICE_FIELDS))
    return OK


# ---- pool owner -------------------------------------------------------------------------------

POOL_COLUMNS = [("POOL", "PoolId"), ("STATE", "State"), ("TARGET", "VmCount"), ("PROVISIONING", "Provisioning"),
                ("IDLE", "Idle"), ("BUSY", "Busy"), ("DRAINING", "Draining"), ("QUEUED", "QueuedJobs"),
                ("RUNNING", "RunningJobs"), ("PLAN", "BillingPlanId"), ("COMPUTE H", "ComputeHours")]


def _pool_row(pool: dict) -> dict:
    return {**pool, **pool["VmCounts"], "ComputeHours": f"{pool['ComputeHours']:.3f}"}


def _auto_minutes(value: str | None):
    if value is None:
        return None
    if value.lower() == "off":
        return "off"
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"--auto-scale-down takes minutes or 'off', not {value!r}") from None


def pools_create(ctx: Context) -> int:
    args = ctx.args
    swagger = args.service_swagger_url
    if not swagger:
        swagger = (f"{ctx.base()}/api/subscriptions/{ctx.settings.need('subscription', 'the subscription id')}"
                   f"/services/{ctx.settings.need('service', 'the web service the pool runs')}/swagger.json")
    minutes = _auto_minutes(args.auto_scale_down)
    pool = ctx.pools().create_pool(args.pool_id, args.vms, swagger, None if minutes == "off" else minutes)
    ctx.emit(pool, lambda p: render.table([_pool_row(p)], POOL_COLUMNS))
    return OK


def pools_list(ctx: Context) -> int:
    pools = ctx.pools().list_pools()
    ctx.emit(pools, lambda rows: render.table([_pool_row(p) for p in rows], POOL_COLUMNS))
    return OK


def pools_show(ctx: Context) -> int:
    pool = ctx.pools().get_pool(ctx.args.pool_id)
    ctx.emit(pool, lambda p: render.pool_screen(p, p["AsOf"]))
    return OK


def pools_resize(ctx: Context) -> int:
    args = ctx.args
    minutes = _auto_minutes(args.auto_scale_down)
    client = ctx.pools()
    if minutes is None:
        pool = client.resize_pool(args.pool_id, args.vms)
    else:
        pool = client.resize_pool(args.pool_id, args.vms, None if minutes == "off" else minutes)
    ctx.emit(pool, lambda p: render.table([_pool_row(p)], POOL_COLUMNS))
    return OK


def pools_delete(ctx: Context) -> int:
    deleted = ctx.pools().delete_pool(ctx.args.pool_id)
    ctx.emit(deleted, lambda r: render.fields(r, list(r)))
    return OK


def pools_watch(ctx: Context) -> int:
    """Redraw the pool every --interval seconds (--count times, or until Ctrl-C)."""
    client, args = ctx.pools(), ctx.args
    drawn = 0
    redraw = sys.stdout.isatty() and not ctx.json
    while args.count is None or drawn < args.count:
        if drawn:
            time.sleep(args.interval)
        pool = client.get_pool(args.pool_id)
        if ctx.json:
            print(render.as_json(pool), flush=True)
        else:
            screen = render.pool_screen(pool, pool["AsOf"])
            print(("\x1b[H\x1b[2J" if redraw else "") + screen + ("" if redraw else "\n"), flush=True)
        drawn += 1
    return OK


def usage(ctx: Context) -> int:
    args = ctx.args
    if args.plan:
        report = ctx.operator().plan_usage(args.plan, args.start, args.end)
        ctx.emit(report, lambda r: render.hourly_chart(
            f"Billing plan {r['BillingPlanId']}: {r['Pools']['ComputeHours']:.3f} pool compute hours, "
            f"{r['ClassicJobs']['Jobs']} classic jobs ({r['ClassicJobs']['ComputeHours']:.3f} h), "
            f"{len(r['Accounts'])} accounts", r["Hourly"], args.width))
        return OK
    report = ctx.pools().usage(args.pool, args.start, args.end)
    ctx.emit(report, lambda r: render.usage_report(r, args.width))
    return OK


# ---- service consumer -------------------------------------------------------------------------

JOB_COLUMNS = [("JOB", "JobId"), ("STATUS", "StatusCode"), ("POOL", "AzureBatchPoolId"), ("QUEUE", "QueuePosition"),
               ("REASON", "PendingReason"), ("VM", "VmId"), ("CREATED", "CreatedAt"), ("ENDED", "EndTime")]
JOB_FIELDS = ["JobId", "StatusCode", "AzureBatchPoolId", "QueuePosition", "PendingReason", "EstimatedStartTime",
              "VmId", "Attempts", "MaxRetries", "MaxQueuedSeconds", "CreatedAt", "StartTime", "EndTime", "Details"]


def _shown(job: dict) -> dict:
    """A job as the CLI prints it: its outputs' tokens with their signatures masked (the CLI
    downloads outputs itself: `jobs download`)."""
    results = {name: {**result, "SasBlobToken": mask(result.get("SasBlobToken") or "") or None}
               for name, result in (job.get("Results") or {}).items()}
    return {**job, "Results": results or job.get("Results")}


def _job_text(job: dict) -> str:
    lines = [render.fields(job, JOB_FIELDS)]
    width = max(len(name) for name in JOB_FIELDS)
    lines += [f"{label.ljust(width)}  {text}" for label, text in render.job_details(job)]
    for name, result in (job.get("Results") or {}).items():
        lines.append(f"Output {name}: {result['BaseLocation']}{result['RelativeLocation']} "
                     "(`batchpool jobs download` saves it)")
    return "\n".join(lines)


def _parameters(pairs: list[str]) -> dict:
    parameters = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"--param takes NAME=VALUE, not {pair!r}")
        parameters[name] = value
    return parameters


class StorageRefused(Exception):
    """The storage account answered the upload with an error."""


def _storage_call(client_for: Callable[[], Any]):
    """Run a blob call, its storage errors as one line each (the SDK retries a little only)."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError

    try:
        return client_for()
    except ServiceRequestError as error:
        raise Unreachable(f"cannot reach the storage account ({_first_line(error)}); is it running, and is "
                          "storage_connection_string right?") from None
    except HttpResponseError as error:
        raise StorageRefused(f"the storage account refused: {error.status_code} "
                             f"{getattr(error, 'error_code', None) or error.reason}") from None


# Two quick retries, a second apart: a storage account that is down is said so in seconds,
# not after the SDK's default exponential back-off (about 18 s, then 24 s, 42 s, ...).
UPLOAD_RETRIES = 2


def _blob_client(connection_string: str, container: str):
    from azure.storage.blob import BlobServiceClient, LinearRetry

    retry = LinearRetry(backoff=1, random_jitter_range=1, retry_total=UPLOAD_RETRIES)
    return BlobServiceClient.from_connection_string(connection_string, retry_policy=retry,
                                                    connection_timeout=10).get_container_client(container)


def _upload(connection_string: str, container: str, blob: str, path: Path) -> None:
    from azure.core.exceptions import ResourceExistsError

    client = _blob_client(connection_string, container)

    def create():
        try:
            client.create_container()
        except ResourceExistsError:
            pass

    _storage_call(create)
    with path.open("rb") as data:
        _storage_call(lambda: client.upload_blob(blob, data, overwrite=True))


def _remove_upload(connection_string: str, container: str, blob: str) -> None:
    from azure.core.exceptions import AzureError

    try:
        _blob_client(connection_string, container).delete_blob(blob)
    except AzureError:
        pass  # best effort: what is left is named in the error the user sees


def follow(ctx: Context, client: JobsClient, job_id: str, interval: float) -> dict:
    """Poll the job until it ends, keeping one progress line up to date; Ctrl-C stops
    following, not the job, and says so."""
    try:
        return _follow(ctx, client, job_id, interval)
    except KeyboardInterrupt:
        print(f"\nbatchpool: stopped following; job {job_id} keeps running (`batchpool jobs show {job_id} --wait` "
              f"follows it again, `batchpool jobs cancel {job_id}` cancels it)", file=sys.stderr)
        raise


def _follow(ctx: Context, client: JobsClient, job_id: str, interval: float) -> dict:
    began = time.monotonic()
    live = sys.stdout.isatty() and not ctx.json
    last = None
    status: dict = {}
    for status in client.follow(job_id, interval):
        line = render.progress_line(status, time.monotonic() - began)
        if live:
            sys.stdout.write("\r" + line + "\x1b[K")
            sys.stdout.flush()
        elif not ctx.json:
            # Into a file or a pipe: one line per change, not one per poll.
            changed = render.progress_line(status, None)
            if changed != last:
                print(line, flush=True)
            last = changed
    if live:
        sys.stdout.write("\n")
    return status


def jobs_submit(ctx: Context) -> int:
    """Everything is checked before anything is uploaded: the command line here, the job by the
    service (the job is submitted first, then its input uploaded, then it is started); a
    failure after the upload removes the uploaded blob and cancels the job."""
    args = ctx.args
    path = Path(args.csv)
    if not path.is_file():
        raise ConfigError(f"no such file: {path}")
    if not CONTAINER_NAME.match(args.container):
        raise ConfigError(f"--container {args.container!r} is not a blob container name: 3-63 lower-case letters, "
                          "digits and single hyphens, e.g. census-1")
    connection = ctx.settings.need("storage_connection_string", "the storage the input is uploaded to")
    blob = args.blob or path.name
    client = ctx.jobs()
    request: dict = {"Inputs": {args.input_name: {"ConnectionString": connection,
                                                  "RelativeLocation": f"{args.container}/{blob}"}},
                     "Outputs": None, "GlobalParameters": _parameters(args.param or [])}
    if args.output_blob:
        outputs = {}
        for pair in args.output_blob:
            name, sep, where = pair.partition("=")
            if not sep or "/" not in where:
                raise ConfigError(f"--output-blob takes NAME=CONTAINER/PATH, not {pair!r}")
            outputs[name] = {"ConnectionString": connection, "RelativeLocation": where}
        request["Outputs"] = outputs
    if args.pool:
        request["AzureBatchPoolId"] = args.pool
    for field, value in (("NotificationUrl", args.notification_url), ("MaxRetries", args.max_retries),
                         ("MaxQueuedSeconds", args.max_queued_seconds)):
        if value is not None:
            request[field] = value
    job_id = client.submit(request)
    try:
        _upload(connection, args.container, blob, path)
        ctx.note(f"uploaded {path} ({path.stat().st_size:,} bytes) to {args.container}/{blob}")
        started = client.start(job_id)
    except BaseException:
        _remove_upload(connection, args.container, blob)
        try:
            client.cancel(job_id)
        except BatchPoolError:
            pass
        raise
    if args.no_wait:
        ctx.emit(_shown(started), lambda job: job["JobId"])
        return OK
    ctx.note(f"job {job_id} submitted and started")
    final = follow(ctx, client, job_id, args.interval)
    finished = final["StatusCode"] == "Finished"
    downloaded = _download_all(ctx, final, Path(args.download_dir), job_id, args.force) if finished else []
    if ctx.json:
        print(render.as_json({**_shown(final), "Downloaded": downloaded}))
    return OK if finished else JOB_DID_NOT_FINISH


def _download_all(ctx: Context, job: dict, folder: Path, job_id: str, force: bool) -> list[dict]:
    """Save each output of a finished job as `<job id>.<output>.csv`, through its token; a file
    already there is kept unless `force`."""
    results = job.get("Results") or {}
    targets = {name: folder / f"{job_id}.{name}.csv" for name in results}
    there = [str(target) for target in targets.values() if target.exists()]
    if there and not force:
        raise ConfigError(f"{', '.join(there)} already there: pass --force to overwrite, or --download-dir")
    folder.mkdir(parents=True, exist_ok=True)
    downloaded = []
    for name, result in results.items():
        target = targets[name]
        size = download(result, str(target))
        downloaded.append({"Output": name, "Path": str(target), "Bytes": size})
        ctx.note(f"downloaded {name} to {target} ({size:,} bytes)")
    return downloaded


def jobs_download(ctx: Context) -> int:
    job = ctx.jobs().get(ctx.args.job_id)
    if job["StatusCode"] != "Finished":
        follow_hint = "" if job["StatusCode"] in TERMINAL else \
            f"; `batchpool jobs show {ctx.args.job_id} --wait` follows it until it ends"
        print(f"batchpool: job {ctx.args.job_id} is {job['StatusCode']}: only a finished job has outputs{follow_hint}",
              file=sys.stderr)
        return JOB_DID_NOT_FINISH
    downloaded = _download_all(ctx, job, Path(ctx.args.download_dir), ctx.args.job_id, ctx.args.force)
    if ctx.json:
        print(render.as_json(downloaded))
    return OK


def jobs_list(ctx: Context) -> int:
    page = ctx.jobs().list(ctx.args.top, ctx.args.continuation_token)
    page = {**page, "Jobs": [_shown(job) for job in page["Jobs"]]}
    if ctx.json:
        print(render.as_json(page))
    else:
        print(render.table(page["Jobs"], JOB_COLUMNS))
        if page.get("ContinuationToken"):
            print(f"\nmore: --continuation-token {page['ContinuationToken']}")
    return OK


def jobs_show(ctx: Context) -> int:
    client = ctx.jobs()
    if ctx.args.wait:
        job = follow(ctx, client, ctx.args.job_id, ctx.args.interval)
        ctx.emit(_shown(job), _job_text)
        return OK if job["StatusCode"] == "Finished" else JOB_DID_NOT_FINISH
    ctx.emit(_shown(client.get(ctx.args.job_id)), _job_text)
    return OK


def jobs_events(ctx: Context) -> int:
    log = ctx.jobs().events(ctx.args.job_id)
    if ctx.json:
        print(render.as_json(log))
        return OK
    print(f"Push events of job {log['JobId']} to {log['NotificationUrl'] or '(no NotificationUrl)'}")
    rows = [{**event, "Time": event["Event"].get("Time")} for event in log["Events"]]
    print(render.table(rows, [("SEQ", "Sequence"), ("TYPE", "Type"), ("STATE", "State"), ("ATTEMPTS", "Attempts"),
                              ("LAST OUTCOME", "LastOutcome"), ("AT", "Time"), ("NEXT ATTEMPT", "NextAttemptAt")]))
    return OK


def jobs_cancel(ctx: Context) -> int:
    ctx.emit(_shown(ctx.jobs().cancel(ctx.args.job_id)), _job_text)
    return OK


# ---- the command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    def common_options(defaults: bool) -> argparse.ArgumentParser:
        # Accepted before or after the command; a command's parser leaves unset ones alone.
        common = argparse.ArgumentParser(add_help=False)
        given: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
        common.add_argument("--profile", help="profile of the config file (default: $BATCHPOOL_PROFILE or 'default')",
                            **given)
        common.add_argument("--base-url", help="the service's address (default http://127.0.0.1:7071)", **given)
        common.add_argument("--output", "-o", choices=("table", "json"), help="table for people, json for scripts",
                            **({"default": "table"} if defaults else given))
        common.add_argument("--verbose", action="store_true", help="trace each HTTP call on stderr (keys masked)",
                            **given)
        return common

    parser = argparse.ArgumentParser(prog="batchpool", parents=[common_options(True)], description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = common_options(False)
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    def command(group, name, handler, help_text, **names):
        sub = group.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        for flag in ("account", "subscription", "service"):
            if names.get(flag):
                sub.add_argument(f"--{flag}", help=f"the {flag} id (default from the profile)")
        return sub

    conf = command(groups, "configure", configure, "set or show the profile's settings")
    for name, (variable, secret) in SETTINGS.items():
        if not secret and name != "base_url":  # --base-url is a common option, saved below
            conf.add_argument(f"--{name.replace('_', '-')}", dest=name, help=f"save {name} (else ${variable})")
    conf.add_argument("--set", action="append", metavar="SETTING", choices=list(SETTINGS),
                      help=f"read one setting ({', '.join(SECRETS)}, ...) at a hidden prompt or from stdin, "
                           "and save it")

    accounts = groups.add_parser("accounts", help="operator: Batch Pool accounts").add_subparsers(
        dest="command", required=True)
    sub = command(accounts, "create", accounts_create,
                  "create an account (its keys are saved to the profile, never printed)")
    sub.add_argument("account_id")
    sub.add_argument("--subscription", required=True)
    sub.add_argument("--max-pools", type=int, required=True)
    sub.add_argument("--max-vms-per-pool", type=int, required=True)
    sub = command(accounts, "show", accounts_show, "show an account")
    sub.add_argument("account_id", nargs="?")
    command(accounts, "list", accounts_list, "list every account")
    sub = command(accounts, "regenerate-key", accounts_regenerate_key, "replace a key (saved to the profile)")
    sub.add_argument("account_id", nargs="?")
    sub.add_argument("--key", choices=("primary", "secondary"), required=True)

    services = groups.add_parser("services", help="operator: web services").add_subparsers(
        dest="command", required=True)
    sub = command(services, "create", services_create, "register a web service (its API key is saved to the profile)",
                  subscription=True)
    sub.add_argument("service_id")
    sub.add_argument("--name")
    sub.add_argument("--kind", choices=("New", "Classic"), default="New")
    sub.add_argument("--billing-plan")
    sub.add_argument("--scorer", required=True, help="module:function, e.g. samples.census:score")
    sub.add_argument("--timeout", type=int, help="TimeoutSeconds of its jobs")
    sub.add_argument("--notification-url", help="default receiver of its jobs' signed push events")
    sub.add_argument("--max-retries", type=int, help="default retries after interruptions (0-20)")
    sub.add_argument("--max-queued-seconds", type=int, help="default cap on a job's wait for a VM")
    sub = command(services, "regenerate-webhook-secret", services_regenerate_webhook_secret,
                  "replace the secret that signs push events (saved to the profile)", subscription=True)
    sub.add_argument("service_id", nargs="?")
    sub = command(services, "show", services_show, "show a web service", subscription=True)
    sub.add_argument("service_id", nargs="?")

    pools = groups.add_parser("pools", help="pool owner: pools of VMs").add_subparsers(dest="command", required=True)
    sub = command(pools, "create", pools_create, "create a pool", account=True, subscription=True, service=True)
    sub.add_argument("pool_id")
    sub.add_argument("--vms", type=int, required=True)
    sub.add_argument("--service-swagger-url", help="the SwaggerUrl of the New web service the pool runs "
                                                   "(default: the profile's subscription and service)")
    sub.add_argument("--auto-scale-down", metavar="MINUTES", help="resize to 0 after this many idle minutes")
    command(pools, "list", pools_list, "list the account's pools", account=True)
    sub = command(pools, "show", pools_show, "a pool with its VMs and queue", account=True)
    sub.add_argument("pool_id")
    sub = command(pools, "resize", pools_resize, "resize a pool (0 stops the bill)", account=True)
    sub.add_argument("pool_id")
    sub.add_argument("--vms", type=int, required=True)
    sub.add_argument("--auto-scale-down", metavar="MINUTES|off")
    sub = command(pools, "delete", pools_delete, "delete a pool (running jobs finish)", account=True)
    sub.add_argument("pool_id")
    sub = command(pools, "watch", pools_watch, "redraw a pool's VMs and queue until Ctrl-C", account=True)
    sub.add_argument("pool_id")
    sub.add_argument("--interval", type=float, default=2.0, help="seconds between redraws")
    sub.add_argument("--count", type=int, help="stop after this many redraws")

    sub = command(groups, "usage", usage, "compute hours per hour, per pool and per plan, and the savings",
                  account=True)
    sub.add_argument("--pool", help="only this pool")
    sub.add_argument("--plan", help="operator: this billing plan across every account (operator key)")
    sub.add_argument("--from", dest="start", help="ISO 8601 start (default 24 hours ago)")
    sub.add_argument("--to", dest="end", help="ISO 8601 end (default now)")
    sub.add_argument("--width", type=int, default=40, help="bar width in characters")

    jobs = groups.add_parser("jobs", help="service consumer: BES jobs").add_subparsers(dest="command", required=True)
    sub = command(jobs, "submit", jobs_submit, "upload a CSV, submit and start a job, follow it, download its outputs",
                  subscription=True, service=True)
    sub.add_argument("csv", help="the local CSV file to score")
    sub.add_argument("--container", required=True, help="the blob container the CSV is uploaded to")
    sub.add_argument("--blob", help="the blob name (default: the file's name)")
    sub.add_argument("--input-name", default="input1")
    sub.add_argument("--pool", help="AzureBatchPoolId: run on this pool (default: the classic environment)")
    sub.add_argument("--param", action="append", metavar="NAME=VALUE", help="a global parameter (repeatable)")
    sub.add_argument("--output-blob", action="append", metavar="NAME=CONTAINER/PATH",
                     help="write an output there (default: the service keeps it and returns a token)")
    sub.add_argument("--download-dir", default=".", help="where outputs are saved as <job id>.<output>.csv "
                                                          "(default: here)")
    sub.add_argument("--force", action="store_true", help="overwrite a download already there")
    sub.add_argument("--no-wait", action="store_true", help="print the job id once started and return")
    sub.add_argument("--notification-url", help="POST the job's signed state changes here")
    sub.add_argument("--max-retries", type=int, help="retries after interruptions that are not the job's fault")
    sub.add_argument("--max-queued-seconds", type=int, help="cancel the job if it waits longer than this")
    sub.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    sub = command(jobs, "list", jobs_list, "the service's jobs, newest first", subscription=True, service=True)
    sub.add_argument("--top", type=int)
    sub.add_argument("--continuation-token")
    sub = command(jobs, "show", jobs_show, "a job's status", subscription=True, service=True)
    sub.add_argument("job_id")
    sub.add_argument("--wait", action="store_true", help="follow the job until it ends")
    sub.add_argument("--interval", type=float, default=1.0)
    sub = command(jobs, "events", jobs_events, "a job's push events and how their delivery went",
                  subscription=True, service=True)
    sub.add_argument("job_id")
    sub = command(jobs, "cancel", jobs_cancel, "cancel a job", subscription=True, service=True)
    sub.add_argument("job_id")
    sub = command(jobs, "download", jobs_download, "save a finished job's outputs through their tokens",
                  subscription=True, service=True)
    sub.add_argument("job_id")
    sub.add_argument("--download-dir", default=".", help="where outputs are saved as <job id>.<output>.csv")
    sub.add_argument("--force", action="store_true", help="overwrite a download already there")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("account", "subscription", "service"):
        if not hasattr(args, name):
            setattr(args, name, None)
    try:
        return args.handler(Context(args))
    except ConfigError as error:
        print(f"batchpool: {error}", file=sys.stderr)
        return USAGE
    except ApiError as error:
        target = f" [{error.target}]" if error.target else ""
        print(f"batchpool: the service answered {error.status} {error.category}/{error.code}{target}: "
              f"{error.message}", file=sys.stderr)
        return REFUSED if error.status < 500 else UNAVAILABLE
    except Unreachable as error:
        print(f"batchpool: {error}", file=sys.stderr)
        return UNAVAILABLE
    except StorageRefused as error:
        print(f"batchpool: {error}", file=sys.stderr)
        return REFUSED
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more can be printed, and Python's own flush at
        # exit must not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("batchpool: standard output was closed before everything was printed", file=sys.stderr)
        return PIPE_CLOSED
    except OSError as error:  # a local file that cannot be read or written
        where = f" {error.filename}" if getattr(error, "filename", None) else ""
        print(f"batchpool: cannot use{where}: {error.strerror or error}", file=sys.stderr)
        return USAGE
    except Exception as error:
        # Never a traceback for a user; --verbose shows it for a bug report.
        if getattr(args, "verbose", False):
            traceback.print_exc()
        print(f"batchpool: the command failed ({type(error).__name__}: {_first_line(error)}); run it again with "
              "--verbose to see why in full", file=sys.stderr)
        return UNAVAILABLE


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else "no message"


if __name__ == "__main__":
    sys.exit(main())
