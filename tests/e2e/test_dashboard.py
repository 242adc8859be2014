"""The dashboard page: its function serves three fixed files under a strict policy, and the
page itself, in a real headless Chromium driven by Playwright, shows what the API says."""
from __future__ import annotations

import os
import re
import shutil

import pytest
import requests

from samples import census
from tests.e2e.harness import unique, wait_for
from tests.e2e.test_pools import create

BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("no Chromium: `make test` installs Debian's chromium package (scripts/install-chromium.sh)")


def test_the_page_function_serves_its_three_files_and_nothing_else(app_host):
    base = f"{app_host.url}/api/dashboard"
    moved = requests.get(base, allow_redirects=False, timeout=10)
    assert moved.status_code == 301 and moved.headers["Location"] == "dashboard/"
    kinds = {"/": "text/html", "/index.html": "text/html", "/dashboard.js": "text/javascript",
             "/dashboard.css": "text/css"}
    for path, kind in kinds.items():
        answer = requests.get(base + path, timeout=10)
        assert answer.status_code == 200 and answer.headers["Content-Type"].startswith(kind), path
        policy = answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src 'self';" in policy and "style-src 'self';" in policy
        assert "frame-ancestors 'none'" in policy and "unsafe" not in policy
        assert answer.headers["X-Content-Type-Options"] == "nosniff" and answer.headers["X-Frame-Options"] == "DENY"
    page = requests.get(base + "/", timeout=10).text
    # Nothing inline that the policy would block: scripts and styles come from files only.
    assert not re.search(r"<script(?![^>]*\bsrc=)", page) and " style=" not in page and "<style" not in page
    assert not re.search(r"\son[a-z]+=", page), "no inline event handlers"
    for probe in ("..%2Fhost.json", "%2e%2e%2fhost.json", "..%5Chost.json", "__init__.py", "function.json",
                  "static%2Findex.html", "dashboard.js%00", "index.html%3F", "INDEX.HTML", "dashboard.py"):
        answer = requests.get(f"{base}/{probe}", timeout=10)
        assert answer.status_code == 404 and b"import" not in answer.content, probe
    for probe in ("../host.json", "static/index.html", "a/b"):
        assert requests.get(f"{base}/{probe}", timeout=10).status_code == 404, probe
    assert requests.post(base + "/index.html", timeout=10).status_code in (404, 405)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=_chromium(), args=BROWSER_FLAGS)
        yield chromium
        chromium.close()


class Watched:
    """A page with everything it did recorded: console messages and every request it sent."""

    def __init__(self, browser, url: str):
        self.context = browser.new_context(viewport={"width": 1100, "height": 900})
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.requests: list[tuple[str, dict]] = []
        self.page.on("console", lambda message: self.console.append(message.text))
        self.page.on("request", lambda request: self.requests.append((request.url, request.headers)))
        self.page.goto(url)

    def connect(self, url: str, key: str, operator: bool = False) -> None:
        if operator:
            self.page.check("input[value=operator]")
        self.page.fill("#url", url)
        self.page.fill("#key", key)
        self.page.click("#connect-button")

    def stored(self) -> dict:
        return self.page.evaluate("""() => ({session: {...sessionStorage}, local: {...localStorage},
                                           cookie: document.cookie, html: document.documentElement.outerHTML})""")

    def close(self) -> None:
        self.context.close()


def test_the_pool_owner_sees_pools_jobs_and_usage_as_the_api_reports_them(browser, api, tenant, blobs, app_host,
                                                                          logs_dir):
    pool_id = unique("dash")
    assert create(api, tenant, 1, pool_id).status_code == 201
    watched = Watched(browser, f"{app_host.url}/api/dashboard/")
    page = watched.page

    watched.connect(tenant.pool_url, "not-the-key")
    page.wait_for_selector("#message:not([hidden])")
    assert "account key was refused (401" in page.text_content("#message")
    assert page.is_visible("#connect") and watched.stored()["session"] == {}, "a refused key is not kept"

    watched.connect(tenant.pool_url, tenant.primary)
    card = f"article.pool[data-pool='{pool_id}']"
    page.wait_for_selector(f"{card} .vm[data-state=Idle]", timeout=30_000)
    assert page.is_hidden("#message") and page.text_content("#account-name") == tenant.account_id

    blobs.put("dash", "in.csv", "".join(census.generate_csv(600)).encode())
    job_id, started = api.run_job(tenant.jobs, tenant.api_key,
                                  blobs.job_body("dash/in.csv", "dash/out.csv", pool_id, SecondsPerChunk=1.5))
    assert started["StatusCode"] == "Running"
    page.wait_for_selector(f"{card} .vm[data-state=Busy][data-job='{job_id}']", timeout=15_000)
    assert page.text_content(f"{card} [data-running]") == "1"
    assert page.is_visible(f"{card} [data-running-job='{job_id}']")
    assert api.wait_job(tenant.jobs, tenant.api_key, job_id)["StatusCode"] == "Finished"
    page.wait_for_selector(f"{card} .vm[data-state=Idle]:not([data-job])", timeout=15_000)
    # The job stays on the VM's timeline once it has ended.
    assert page.locator(f"{card} svg.timeline rect[data-job='{job_id}']").count() == 1

    # Stop the bill, then the chart's figures are final: they must be the API's, to the second.
    resized = api.call("POST", f"{tenant.pools}/{pool_id}/resize", {"VmCount": 0}, key=tenant.primary)
    assert resized.status_code == 202, resized.text
    stopped = api.call("GET", f"{tenant.pools}/{pool_id}", key=tenant.primary).json()
    billed = stopped["ComputeSeconds"]
    assert billed > 0 and stopped["Vms"][0]["State"] == "Deleted", stopped
    page.wait_for_selector(f"{card} [data-state=Idle]:text('Idle 0')")
    usage = wait_for(lambda: (u := api.call("GET", f"/api/accounts/{tenant.account_id}/usage",
                                            key=tenant.primary).json())["Total"]["VmSeconds"] == billed and u,
                     timeout=30)

    def charted(chart: str) -> int:
        return page.evaluate(f"""() => [...document.querySelectorAll("#{chart} rect.bar-segment")]
                                   .reduce((sum, bar) => sum + Number(bar.dataset.seconds), 0)""")

    wait_for(lambda: charted("chart-pools") == billed, timeout=15)
    assert charted("chart-plans") == billed
    hours = {h["Hour"] for h in usage["Pools"][0]["Hourly"]}
    drawn = set(page.evaluate("""() => [...document.querySelectorAll("#chart-pools rect.bar-segment")]
                                   .map((bar) => bar.dataset.hour)"""))
    assert drawn == hours
    assert page.locator("#chart-plans rect.bar-segment[data-series='plan-a']").count() == len(hours)
    assert page.text_content("#total-hours") == f"{usage['Total']['ComputeHours']:.3f}"
    # What the job cost, by web service and by job, as the report says.
    (service,) = usage["Services"]
    page.wait_for_selector(f"#services tr[data-service='{tenant.service_id}']")
    cells = page.locator(f"#services tr[data-service='{tenant.service_id}'] td").all_text_contents()
    assert cells[1:4] == [str(service["Jobs"]), str(service["ComputeSeconds"]), str(service["AllocatedIdleSeconds"])]
    assert page.is_visible(f"#jobs-cost tr[data-job-cost='{job_id}']")

    shot = logs_dir / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

    # Where the key went: the tab's session storage and the API's request headers, nowhere else.
    stored = watched.stored()
    assert stored["session"]["batchpool.key"] == tenant.primary
    assert stored["local"] == {} and stored["cookie"] == "" and tenant.primary not in stored["html"]
    assert watched.context.cookies() == []
    assert all(tenant.primary not in url for url, _ in watched.requests)
    page_files = [headers for url, headers in watched.requests if "/api/dashboard" in url]
    assert page_files and not any({"authorization", "x-functions-key"} & set(h) for h in page_files)
    api_calls = [headers for url, headers in watched.requests if "/api/accounts/" in url]
    assert {h.get("authorization") for h in api_calls} == {"Bearer not-the-key", f"Bearer {tenant.primary}"}
    assert not [line for line in watched.console if "Content Security Policy" in line], watched.console

    page.click("#disconnect")
    assert page.is_visible("#connect") and watched.stored()["session"] == {}
    watched.close()


def test_the_operator_sees_accounts_and_usage_by_plan(browser, api, tenant, app_host):
    pool_id = unique("opdash")
    assert create(api, tenant, 1, pool_id).status_code == 201
    wait_for(lambda: any(p["BillingPlanId"] == "plan-a" and p["Pools"]["VmSeconds"] > 0
                         for p in api.call("GET", "/api/billingplans", admin=True).json()["BillingPlans"]), timeout=30)
    watched = Watched(browser, f"{app_host.url}/api/dashboard/")
    watched.page.check("input[value=operator]")
    assert watched.page.input_value("#url") == f"{app_host.url}/api", "the API base URL is this page's"
    watched.connect(f"{app_host.url}/api", "wrong-operator-key")
    watched.page.wait_for_selector("#message:not([hidden])")
    assert "operator credential was refused (401" in watched.page.text_content("#message")
    watched.connect(f"{app_host.url}/api", api.operator_key, operator=True)
    watched.page.wait_for_selector(f"#accounts tr[data-account='{tenant.account_id}']")
    row = watched.page.text_content(f"#accounts tr[data-account='{tenant.account_id}']")
    assert tenant.subscription_id in row
    watched.page.wait_for_selector("#plans tr[data-plan='plan-a']")
    watched.page.wait_for_selector("#chart-operator rect.bar-segment[data-series='plan-a']")
    assert not [line for line in watched.console if "Content Security Policy" in line]
    watched.close()
