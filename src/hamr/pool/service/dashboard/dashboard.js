// The pool's dashboard (docs/pool.md, "Dashboard"): the API's lists and /v1/dashboard, polled every POLL_MS.
// The token lives in this tab's sessionStorage and travels only in the Authorization header, never in a URL.
// Every value from the pool reaches the page as text (textContent, setAttribute), never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "hamr.token";
  const POLL_MS = 2000;
  const WINDOW_S = 600; // the plots' longest time span (the server keeps 10 minutes)
  const SHORTEST_S = 60; // ... and their shortest, while the history is younger
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  let token = sessionStorage.getItem(TOKEN_KEY);
  let timer = null;
  let running = false;
  let again = false;
  let submitted = null; // the job this page submitted last: highlighted

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function api(path, options = {}, withToken = token) {
    let answer;
    try {
      answer = await fetch(path, {
        ...options,
        headers: { Authorization: `Bearer ${withToken}`, ...(options.headers || {}) },
        cache: "no-store",
      });
    } catch (err) {
      throw new ApiError(0, `the pool does not answer (${err.message})`);
    }
    if (answer.ok) return answer.json();
    let detail = `${answer.status} ${answer.statusText}`;
    try {
      const body = await answer.json();
      if (body && typeof body.detail === "string") detail = body.detail;
    } catch (_) {
      // not JSON: keep the status line
    }
    throw new ApiError(answer.status, detail);
  }

  // -- building the page ---------------------------------------------------------------------------

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (key === "data") for (const [k, v] of Object.entries(value)) node.dataset[k] = String(v);
      else if (key === "class") node.className = value;
      else node.setAttribute(key, String(value));
    }
    node.append(...children.flat().filter((c) => c !== null && c !== undefined).map((c) => (c instanceof Node ? c : String(c))));
    return node;
  }

  function svgEl(tag, attrs = {}) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    return node;
  }

  // A line over the last `span.s` seconds; null values break it. `top`: the value at the plot's top.
  function plot(times, values, span, top, label) {
    const w = 180, h = 36;
    const svg = svgEl("svg", { class: "plot", width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": label });
    svg.append(svgEl("title"));
    svg.firstChild.textContent = label;
    let segment = [];
    const flush = () => {
      if (segment.length > 1) svg.append(svgEl("polyline", { points: segment.join(" ") }));
      if (segment.length === 1) {
        const [x, y] = segment[0].split(",");
        svg.append(svgEl("circle", { cx: x, cy: y, r: 1.5, class: "fill" }));
      }
      segment = [];
    };
    times.forEach((t, i) => {
      const v = values[i];
      if (v === null || v === undefined || !(top > 0)) return flush();
      const x = Math.max(0, w - ((span.now - t) / span.s) * w);
      const y = h - 1 - Math.min(1, v / top) * (h - 2);
      segment.push(`${x.toFixed(1)},${y.toFixed(1)}`);
    });
    flush();
    return svg;
  }

  function fill(tbody, rows, columns, emptyText) {
    tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colspan: columns }, emptyText))]));
  }

  const bytes = (n) => {
    if (n === null || n === undefined) return "?";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  };
  const percent = (v) => (v === null || v === undefined ? "?" : `${Math.round(v * 100)}%`);
  const clock = (iso) => new Date(iso).toLocaleTimeString();
  const last = (list) => (list.length ? list[list.length - 1] : null);

  // -- the sections --------------------------------------------------------------------------------

  function renderNodes(nodes, devices, stranded, fragment) {
    const counts = {};
    for (const d of devices) counts[d.node] = (counts[d.node] || 0) + 1;
    const rows = nodes.map((n) =>
      el("tr", { data: { node: n.name } },
        el("td", { class: "mono" }, n.name),
        el("td", {}, n.state),
        el("td", { class: "mono" }, n.address || "—"),
        el("td", {}, clock(n.last_heartbeat)),
        el("td", {}, counts[n.name] || 0),
        el("td", { class: "stranded" }, `${(stranded[n.name] || 0).toFixed(3)} devices`),
        el("td", { class: "fragment" }, `${(fragment[n.name] || 0).toFixed(3)} devices`)));
    fill($("nodes").tBodies[0], rows, 7, "no nodes");
  }

  // The plots' time span: the history's age, between SHORTEST_S and WINDOW_S seconds.
  function spanOf(board) {
    const firsts = [...board.devices, ...board.request_rates].filter((s) => s.t.length).map((s) => s.t[0]);
    const age = firsts.length ? board.now - Math.min(...firsts) : 0;
    const s = Math.min(WINDOW_S, Math.max(SHORTEST_S, age));
    return { now: board.now, s, words: s >= 120 ? `${Math.round(s / 60)} minutes` : `${Math.round(s)} s` };
  }

  function renderDevices(devices, series, span) {
    const byUuid = Object.fromEntries(series.map((s) => [s.uuid, s]));
    const rows = devices.map((d) => {
      const s = byUuid[d.uuid] || { t: [], utilisation: [], memory_used: [], memory_total: d.memory_total };
      const used = last(s.memory_used);
      const util = last(s.utilisation);
      return el("tr", { data: { uuid: d.uuid } },
        el("td", { class: "mono", title: d.uuid }, d.local_id ? `${d.local_id} ` : "", el("span", { class: "muted" }, d.uuid)),
        el("td", { class: "mono" }, d.node || "—"),
        el("td", {}, d.kind),
        el("td", { class: "mono" }, d.architecture),
        el("td", {}, d.drained ? `${d.health}, drained` : d.health),
        el("td", {}, el("div", { class: "plot-cell" },
          plot(s.t, s.utilisation, span, 1, `utilisation of ${d.uuid} over the last ${span.words}`),
          el("span", { class: "value" }, percent(util)))),
        el("td", {}, el("div", { class: "plot-cell" },
          plot(s.t, s.memory_used, span, s.memory_total, `memory used on ${d.uuid} over the last ${span.words}`),
          el("span", { class: "value" }, `${bytes(used)} / ${bytes(s.memory_total)}`))));
    });
    fill($("devices").tBodies[0], rows, 7, "no devices");
  }

  const WAITING = new Set(["queued", "requeued"]); // why a job waits is news only while it waits

  function renderJobs(jobs, tenantName, executableName) {
    const rows = jobs.map((j) => {
      const placements = j.placements.map((p) =>
        el("li", { title: p.reason }, `attempt ${p.attempt} on `, el("span", { class: "mono" }, p.device), ": ", p.reason));
      return el("tr", { data: { jobId: j.id, tenantId: j.tenant_id }, class: j.id === submitted ? "mine" : null },
        el("td", { class: "mono" }, `#${j.id}`),
        el("td", {}, tenantName(j.tenant_id)),
        el("td", {}, executableName(j.executable_id)),
        el("td", { class: `state state-${j.state}` }, j.state),
        el("td", { class: "attempts" }, j.attempts),
        el("td", {}, el("ul", { class: "plain" }, placements)),
        el("td", { class: j.error ? "error" : "" }, j.error || (WAITING.has(j.state) ? j.reason : "") || ""),
        el("td", {}, clock(j.updated_at)));
    });
    fill($("jobs").tBodies[0], rows, 8, "no jobs");
  }

  function renderDeployments(deployments, rates, span, tenantName, executableName) {
    const byId = Object.fromEntries(rates.map((r) => [r.deployment_id, r]));
    const rows = deployments.map((d) => {
      const r = byId[d.id] || { t: [], per_s: [] };
      const top = Math.max(1, ...r.per_s);
      const replicas = d.replica_list.map((x) =>
        el("li", { title: x.reason }, `${x.state} on ${x.kind} `, el("span", { class: "mono" }, x.architecture)));
      return el("tr", { data: { deploymentId: d.id, tenantId: d.tenant_id } },
        el("td", {}, `#${d.id} `, d.name),
        el("td", {}, tenantName(d.tenant_id)),
        el("td", {}, executableName(d.executable_id)),
        el("td", {}, `${d.ready} / ${d.replicas}`),
        el("td", {}, el("ul", { class: "plain" }, replicas)),
        el("td", {}, el("div", { class: "plot-cell" },
          plot(r.t, r.per_s, span, top, `requests per second to deployment ${d.id} over the last ${span.words}`),
          el("span", { class: "value" }, `${(last(r.per_s) || 0).toFixed(1)}/s`))));
    });
    fill($("deployments").tBodies[0], rows, 6, "no deployments");
  }

  function renderExecutables(executables) {
    const select = $("executable");
    const wanted = executables.map((e) => `${e.id}`).join(",");
    if (select.dataset.ids === wanted) return;
    const chosen = select.value;
    select.replaceChildren(...executables.map((e) =>
      el("option", { value: e.id, data: { tenantId: e.tenant_id } }, `#${e.id} ${e.name} (${e.targets.join(", ")})`)));
    if (executables.some((e) => `${e.id}` === chosen)) select.value = chosen;
    select.dataset.ids = wanted;
  }

  // -- polling -------------------------------------------------------------------------------------

  async function refresh() {
    const board = await api("/v1/dashboard");
    const [devices, deployments, executables, nodes, tenants] = await Promise.all([
      api("/v1/devices"),
      api("/v1/deployments"),
      api("/v1/executables"),
      board.admin ? api("/v1/nodes") : [],
      board.admin ? api("/v1/tenants") : [],
    ]);
    const names = Object.fromEntries(tenants.map((t) => [t.id, t.name]));
    const tenantName = (id) => names[id] || board.tenant || `tenant ${id}`;
    const exeNames = Object.fromEntries(executables.map((e) => [e.id, e.name]));
    const executableName = (id) => (exeNames[id] ? `#${id} ${exeNames[id]}` : `#${id}`);
    $("who").textContent = board.admin ? `admin${board.tenant ? ` (tenant ${board.tenant})` : ""}` : `tenant ${board.tenant}`;
    $("nodes-section").hidden = !board.admin;
    if (board.admin) renderNodes(nodes, devices, board.stranded, board.expected_fragment);
    const span = spanOf(board);
    renderDevices(devices, board.devices, span);
    renderJobs(board.jobs, tenantName, executableName);
    renderDeployments(deployments, board.request_rates, span, tenantName, executableName);
    renderExecutables(executables);
  }

  async function poll() {
    if (running) { again = true; return; }
    running = true;
    clearTimeout(timer);
    try {
      await refresh();
      setStatus(`updated ${new Date().toLocaleTimeString()}`);
    } catch (err) {
      if (err.status === 401) return logOut(`logged out: ${err.message}`);
      setStatus(err.message, true);
    } finally {
      running = false;
    }
    if (token) timer = setTimeout(poll, again ? 0 : POLL_MS);
    again = false;
  }

  function setStatus(text, bad = false) {
    $("status").textContent = text;
    $("status").classList.toggle("error", bad);
  }

  // -- logging in and out, submitting ----------------------------------------------------------------

  function show(loggedIn) {
    $("login").hidden = loggedIn;
    $("board").hidden = !loggedIn;
    $("logout").hidden = !loggedIn;
  }

  function logOut(why = "") {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(timer);
    show(false);
    $("who").textContent = "";
    setStatus("");
    $("login-error").textContent = why;
  }

  async function logIn(event) {
    event.preventDefault();
    const candidate = $("token").value.trim();
    $("login-error").textContent = "";
    try {
      await api("/v1/dashboard", {}, candidate);
    } catch (err) {
      $("login-error").textContent = `cannot log in: ${err.message}`;
      return;
    }
    $("token").value = "";
    token = candidate;
    sessionStorage.setItem(TOKEN_KEY, token);
    show(true);
    poll();
  }

  async function submitJob(event) {
    event.preventDefault();
    const result = $("submit-result");
    const files = [...$("inputs").files];
    result.className = "";
    if (!$("executable").value) {
      result.textContent = "upload an executable first (hamr pool submit, or POST /v1/executables)";
      result.className = "error";
      return;
    }
    const form = new FormData();
    form.append("executable_id", $("executable").value);
    form.append("priority", $("priority").value || "0");
    form.append("n_devices", $("n-devices").value || "1");
    for (const file of files) form.append(file.name.replace(/\.npy$/i, ""), file, file.name);
    try {
      const job = await api("/v1/jobs", { method: "POST", body: form });
      submitted = job.id;
      result.textContent = `job ${job.id} submitted`;
      result.dataset.jobId = job.id;
    } catch (err) {
      if (err.status === 401) return logOut(`logged out: ${err.message}`);
      result.textContent = `not submitted: ${err.message}`;
      result.className = "error";
      return;
    }
    poll();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", logIn);
    $("submit-form").addEventListener("submit", submitJob);
    $("logout").addEventListener("click", () => logOut());
    show(Boolean(token));
    if (token) poll();
  });
})();
