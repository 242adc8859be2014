// The Batch Pool dashboard: calls the service's own API from the browser with the key its
// user typed. The key is kept in sessionStorage (this tab only) and sent only in request
// headers; it never goes into a URL, a cookie or the page.
"use strict";

(function () {
  const REFRESH_MS = 2000;
  const STORE = { mode: "batchpool.mode", url: "batchpool.url", key: "batchpool.key" };
  const SVG = "http://www.w3.org/2000/svg";
  const STATES = ["Provisioning", "Idle", "Busy", "Draining"];
  const PALETTE = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795", "#b7791f", "#4a5568"];

  const $ = (id) => document.getElementById(id);
  let timer = null;
  let busy = false;
  // What the page has seen each VM doing, per pool: {vmId: [{job, from, to}]}. The service
  // keeps a VM's current job only, so earlier jobs are those seen while the page was open.
  const seen = {};

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attributes, title) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
    if (title) {
      const tip = document.createElementNS(SVG, "title");
      tip.textContent = title;
      node.appendChild(tip);
    }
    return node;
  }

  function hours(seconds) { return (seconds / 3600).toFixed(3); }

  function say(text) {
    const box = $("message");
    box.textContent = text || "";
    box.hidden = !text;
  }

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  function session() {
    return { mode: sessionStorage.getItem(STORE.mode), url: sessionStorage.getItem(STORE.url),
             key: sessionStorage.getItem(STORE.key) };
  }

  async function call(path) {
    const { mode, url, key } = session();
    const headers = { "Authorization": "Bearer " + key };
    let response;
    try {
      response = await fetch(url + path, { headers, credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" });
    } catch (error) {
      throw new ApiError(0, "Unreachable", "cannot reach " + url + " (" + error.message + ")");
    }
    let body = null;
    try { body = await response.json(); } catch (ignored) { body = null; }
    if (!response.ok) {
      const envelope = body && body.error;
      const detail = envelope && envelope.details && envelope.details[0];
      throw new ApiError(response.status, detail ? detail.code : "HTTP" + response.status,
                         envelope ? envelope.message : response.status + " " + response.statusText);
    }
    return body;
  }

  function explain(error) {
    if (error.status === 401) {
      return session().mode === "operator"
        ? "The operator credential was refused (401 Unauthorized). Check the operator key (or access token) and the API base URL."
        : "The account key was refused (401 Unauthorized). Check the key and the pool service URL.";
    }
    if (error.status === 404) return "Nothing answers at that URL (404): check the pool service URL.";
    if (error.status === 0) return "The service cannot be reached: " + error.message;
    return "The service answered " + error.status + " " + error.code + ": " + error.message;
  }

  // ---- charts ---------------------------------------------------------------------------

  // A stacked bar chart of VM-seconds per hour, one colour per series.
  function drawHourly(container, series) {
    container.replaceChildren();
    const hoursSet = new Set();
    series.forEach((s) => s.hourly.forEach((h) => hoursSet.add(h.Hour)));
    const allHours = Array.from(hoursSet).sort();
    if (!allHours.length) {
      container.appendChild(element("p", { class: "empty" }, "No compute hours billed in this range yet."));
      return;
    }
    const totals = allHours.map((hour) => series.reduce((sum, s) => {
      const found = s.hourly.find((h) => h.Hour === hour);
      return sum + (found ? found.VmSeconds : 0);
    }, 0));
    const top = Math.max(...totals, 1);
    const width = 640, height = 200, left = 56, bottom = 28, barGap = 4;
    const barWidth = Math.max(6, Math.min(48, (width - left) / allHours.length - barGap));
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "hourly",
                               "aria-label": "compute hours per hour" });
    const plotHeight = height - bottom - 10;
    chart.appendChild(svg("line", { x1: left, y1: 10, x2: left, y2: height - bottom, class: "axis" }));
    chart.appendChild(svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" }));
    const topLabel = svg("text", { x: left - 6, y: 16, "text-anchor": "end", class: "label" });
    topLabel.textContent = hours(top) + " h";
    chart.appendChild(topLabel);
    allHours.forEach((hour, index) => {
      const x = left + barGap + index * (barWidth + barGap);
      let y = height - bottom;
      series.forEach((s, position) => {
        const found = s.hourly.find((h) => h.Hour === hour);
        if (!found || !found.VmSeconds) return;
        const barHeight = Math.max(1, (found.VmSeconds / top) * plotHeight);
        y -= barHeight;
        chart.appendChild(svg("rect", {
          x, y, width: barWidth, height: barHeight, fill: PALETTE[position % PALETTE.length], class: "bar-segment",
          "data-series": s.name, "data-hour": hour, "data-seconds": found.VmSeconds,
        }, `${s.name}, ${hour}: ${hours(found.VmSeconds)} compute hours (${found.VmSeconds} VM-seconds)`));
      });
      const label = svg("text", { x: x + barWidth / 2, y: height - bottom + 16, "text-anchor": "middle", class: "label" });
      label.textContent = hour.slice(11, 16);
      chart.appendChild(label);
    });
    container.appendChild(chart);
    const legend = element("ul", { class: "legend" });
    series.forEach((s, position) => {
      const item = element("li");
      const swatch = svg("svg", { width: 12, height: 12, class: "swatch" });
      swatch.appendChild(svg("rect", { width: 12, height: 12, fill: PALETTE[position % PALETTE.length] }));
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(` ${s.name}: ${hours(s.total)} h`));
      legend.appendChild(item);
    });
    container.appendChild(legend);
  }

  // One line per VM: provisioning, then up (idle) until deleted; jobs seen on it on top.
  function drawTimeline(pool, now) {
    const vms = pool.Vms || [];
    const start = Math.min(...vms.map((vm) => Date.parse(vm.CreatedAt)), now - 60000);
    const from = Math.max(start, now - 3600 * 1000);
    const width = 640, rowHeight = 18, left = 90;
    const scale = (t) => left + ((Math.max(t, from) - from) / Math.max(now - from, 1)) * (width - left - 4);
    const chart = svg("svg", { viewBox: `0 0 ${width} ${Math.max(vms.length, 1) * rowHeight + 20}`,
                               class: "timeline", role: "img", "aria-label": "VM states and jobs over time" });
    const history = seen[pool.PoolId] || {};
    vms.forEach((vm, row) => {
      const y = row * rowHeight + 2;
      const label = svg("text", { x: 0, y: y + 12, class: "label" });
      label.textContent = vm.VmId;
      chart.appendChild(label);
      const created = Date.parse(vm.CreatedAt);
      const provisioned = vm.ProvisionedAt ? Date.parse(vm.ProvisionedAt) : null;
      const deleted = vm.DeletedAt ? Date.parse(vm.DeletedAt) : null;
      const end = deleted || now;
      const ready = provisioned && provisioned <= now ? provisioned : null;
      const span = (a, b, state, title, extra) => chart.appendChild(svg("rect", Object.assign({
        x: scale(a), y, width: Math.max(1, scale(b) - scale(a)), height: rowHeight - 4,
        class: "state-" + state.toLowerCase(), "data-vm": vm.VmId, "data-state": state,
      }, extra || {}), title));
      span(created, ready || end, "Provisioning", `${vm.VmId} provisioning`);
      if (ready) span(ready, end, "Idle", `${vm.VmId} up since ${vm.ProvisionedAt}`);
      (history[vm.VmId] || []).forEach((job) => span(job.from, job.to, "Busy", `${vm.VmId} ran job ${job.job}`,
                                                      { "data-job": job.job }));
    });
    const axis = svg("text", { x: left, y: Math.max(vms.length, 1) * rowHeight + 16, class: "label" });
    axis.textContent = new Date(from).toISOString().slice(11, 19) + " UTC to now";
    chart.appendChild(axis);
    return chart;
  }

  function drains(pool, now) {
    if (!pool.QueuedJobs) return "no queue";
    if (pool.QueueDrainsAt) {
      const seconds = Math.max(0, Math.round((Date.parse(pool.QueueDrainsAt) - now) / 1000));
      return `in about ${seconds} s (typical run ${pool.Estimate.TypicalRunSeconds} s, ${pool.Estimate.RecentJobs} recent jobs)`;
    }
    return pool.Estimate && pool.Estimate.Basis === "NoHistory" ? "no estimate yet: no recent jobs on this pool" : "no estimate";
  }

  function remember(pool, now) {
    const history = seen[pool.PoolId] = seen[pool.PoolId] || {};
    (pool.Vms || []).forEach((vm) => {
      const spans = history[vm.VmId] = history[vm.VmId] || [];
      const last = spans[spans.length - 1];
      if (vm.JobId && last && last.job === vm.JobId && last.open) {
        last.to = now;
      } else {
        if (last) last.open = false;
        if (vm.JobId) spans.push({ job: vm.JobId, from: now, to: now, open: true });
      }
    });
  }

  // ---- views ----------------------------------------------------------------------------

  function poolCard(pool, now) {
    const card = element("article", { class: "pool", "data-pool": pool.PoolId });
    const head = element("div", { class: "bar" });
    head.appendChild(element("h3", {}, pool.PoolId));
    head.appendChild(element("span", { class: "pool-state" }, `${pool.State}, target ${pool.VmCount} VMs`));
    card.appendChild(head);
    const counts = element("ul", { class: "counts" });
    STATES.forEach((state) => counts.appendChild(element("li", { class: "state-" + state.toLowerCase(), "data-state": state },
                                                           `${state} ${pool.VmCounts[state]}`)));
    card.appendChild(counts);
    const vmRow = element("div", { class: "vms" });
    (pool.Vms || []).filter((vm) => vm.State !== "Deleted").forEach((vm) => {
      const box = element("span", { class: "vm state-" + vm.State.toLowerCase(), "data-vm": vm.VmId, "data-state": vm.State,
                                    title: vm.JobId ? `${vm.VmId}: ${vm.State}, job ${vm.JobId}` : `${vm.VmId}: ${vm.State}` },
                          vm.VmId.replace(/^vm-0*(?=\d)/, "vm-"));
      if (vm.JobId) box.setAttribute("data-job", vm.JobId);
      vmRow.appendChild(box);
    });
    card.appendChild(vmRow);
    const facts = element("dl", { class: "facts" });
    const fact = (name, value, attribute) => {
      facts.appendChild(element("dt", {}, name));
      facts.appendChild(element("dd", attribute ? { [attribute]: "" } : {}, String(value)));
    };
    fact("Queued jobs", pool.QueuedJobs, "data-queued");
    fact("Running jobs", pool.RunningJobs, "data-running");
    fact("Billing plan", pool.BillingPlanId);
    fact("Compute hours so far", pool.ComputeHours.toFixed(3));
    fact("Auto scale-down", pool.AutoScaleDownAfterMinutes ? `after ${pool.AutoScaleDownAfterMinutes} min idle` : "off");
    fact("Queue drains", drains(pool, now), "data-drains");
    card.appendChild(facts);
    const running = (pool.Vms || []).filter((vm) => vm.JobId);
    const jobs = element("ul", { class: "jobs" });
    running.forEach((vm) => jobs.appendChild(element("li", { "data-running-job": vm.JobId }, `running ${vm.JobId} on ${vm.VmId}`)));
    (pool.Queue || []).forEach((job, index) => jobs.appendChild(element("li", { "data-queued-job": job },
                                                                         `waiting #${index + 1}: ${job}`)));
    card.appendChild(jobs);
    card.appendChild(element("h4", {}, "Timeline"));
    card.appendChild(drawTimeline(pool, now));
    return card;
  }

  async function refreshOwner() {
    const list = await call("/pools");
    const details = await Promise.all(list.Pools.map((pool) => call("/pools/" + encodeURIComponent(pool.PoolId))));
    const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString().slice(0, 19) + "Z";
    const usage = await call("/usage?from=" + encodeURIComponent(since));
    const now = Date.now();
    details.forEach((pool) => remember(pool, now));
    $("pools").replaceChildren(...details.map((pool) => poolCard(pool, now)));
    $("no-pools").hidden = details.length > 0;
    $("total-hours").textContent = usage.Total.ComputeHours.toFixed(3);
    $("saved-hours").textContent = usage.AutoScaleDown.SavedComputeHours.toFixed(3);
    drawHourly($("chart-pools"), usage.Pools.map((p) => ({ name: p.PoolId, hourly: p.Hourly, total: p.VmSeconds })));
    drawHourly($("chart-plans"), usage.BillingPlans.map((p) => ({ name: p.BillingPlanId || "(none)", hourly: p.Hourly,
                                                                 total: p.PoolVmSeconds })));
    $("services").tBodies[0].replaceChildren(...usage.Services.map((s) => {
      const tr = row([s.ServiceId, s.Jobs, s.ComputeSeconds, s.AllocatedIdleSeconds, s.ComputeHours.toFixed(4)]);
      tr.setAttribute("data-service", s.ServiceId);
      return tr;
    }));
    $("jobs-cost").tBodies[0].replaceChildren(...usage.Jobs.slice(0, 10).map((j) => {
      const tr = row([j.JobId, j.ServiceId, j.PoolId, j.ComputeSeconds, j.AllocatedIdleSeconds, j.ComputeHours.toFixed(4)]);
      tr.setAttribute("data-job-cost", j.JobId);
      return tr;
    }));
  }

  function row(cells) {
    const tr = element("tr");
    cells.forEach((cell) => tr.appendChild(element("td", {}, String(cell))));
    return tr;
  }

  async function refreshOperator() {
    const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString().slice(0, 19) + "Z";
    const [accounts, plans] = await Promise.all([call("/accounts"), call("/billingplans?from=" + encodeURIComponent(since))]);
    $("accounts").tBodies[0].replaceChildren(...accounts.Accounts.map((a) => {
      const tr = row([a.AccountId, a.SubscriptionId, a.MaxPools, a.MaxVmsPerPool, a.CreatedAt]);
      tr.setAttribute("data-account", a.AccountId);
      return tr;
    }));
    $("plans").tBodies[0].replaceChildren(...plans.BillingPlans.map((p) => {
      const tr = row([p.BillingPlanId, p.Pools.ComputeHours.toFixed(3), p.ClassicJobs.Jobs, p.ClassicJobs.ComputeHours.toFixed(3),
                      p.Accounts.length]);
      tr.setAttribute("data-plan", p.BillingPlanId);
      return tr;
    }));
    drawHourly($("chart-operator"), plans.BillingPlans.map((p) => ({ name: p.BillingPlanId, hourly: p.Hourly,
                                                                   total: p.Pools.VmSeconds })));
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    const { mode } = session();
    try {
      await (mode === "operator" ? refreshOperator() : refreshOwner());
      say("");
      $("status").textContent = "connected";
      $("refreshed").textContent = "Refreshed at " + new Date().toISOString().slice(11, 19) + " UTC, every "
        + REFRESH_MS / 1000 + " s.";
      return true;
    } catch (error) {
      say(explain(error));
      if (error.status === 401) disconnect(false);
      return false;
    } finally {
      busy = false;
    }
  }

  function show(mode) {
    const connected = Boolean(mode);
    $("connect").hidden = connected;
    $("owner").hidden = mode !== "owner";
    $("operator").hidden = mode !== "operator";
  }

  function disconnect(clearMessage) {
    clearInterval(timer);
    timer = null;
    Object.values(STORE).forEach((name) => sessionStorage.removeItem(name));
    $("status").textContent = "";
    show(null);
    if (clearMessage !== false) say("");
  }

  async function connect() {
    const { mode, url } = session();
    $("account-name").textContent = mode === "owner" ? url.replace(/\/+$/, "").split("/").pop() : "";
    show(mode);
    if (await refresh()) timer = setInterval(refresh, REFRESH_MS);
  }

  function formMode() {
    return document.querySelector("input[name=mode]:checked").value;
  }

  function labelUrl() {
    const operator = formMode() === "operator";
    $("url-label").firstChild.textContent = operator ? "API base URL " : "Pool service URL ";
    $("url").placeholder = operator ? location.origin + "/api" : location.origin + "/api/accounts/contoso";
    if (operator && !$("url").value) $("url").value = location.origin + "/api";
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("input[name=mode]").forEach((radio) => radio.addEventListener("change", labelUrl));
    labelUrl();
    $("connect").addEventListener("submit", (event) => {
      event.preventDefault();
      const url = $("url").value.trim().replace(/\/+$/, "");
      if (!/^https?:\/\/[^/?#]+(\/[^?#]*)?$/.test(url)) {
        say("The URL must be an http(s) address without a query, like " + $("url").placeholder + ".");
        return;
      }
      sessionStorage.setItem(STORE.mode, formMode());
      sessionStorage.setItem(STORE.url, url);
      sessionStorage.setItem(STORE.key, $("key").value.trim());
      $("key").value = "";
      connect();
    });
    $("disconnect").addEventListener("click", () => disconnect());
    $("disconnect-operator").addEventListener("click", () => disconnect());
    if (session().key) connect();
  });
})();
