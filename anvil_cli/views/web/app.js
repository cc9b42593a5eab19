/* Anvil's run page. Two modes, one rendering path:
   - live (`anvil run --serve`): polls GET /status and GET /series?since= once a second with the
     bearer token. Polling, not server-sent events: EventSource cannot send an Authorization
     header, and the token must not travel in a URL or a cookie.
   - report (`anvil report`): reads the data embedded in the page (#anvil-data), no network.
   Text that comes from the run (job ids, error messages, model names) only ever goes into the
   page through textContent, never as HTML. */
(function () {
  "use strict";

  const POLL_MS = 1000;
  const MAX_RETRY_MS = 10000;
  const MAX_SAMPLES = 3000; // beyond this the older half is thinned (every other sample)
  const TOKEN_KEY = "anvil.token";
  const ENDED = ["finished", "stopped", "interrupted"];
  const C = window.AnvilCharts;

  const $ = (id) => document.getElementById(id);

  function text(node, value) {
    node.textContent = value === null || value === undefined ? "" : String(value);
    return node;
  }

  function cell(row, value, cls) {
    const td = document.createElement("td");
    text(td, value);
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function fillTable(id, rows, emptyText, build) {
    const body = $(id).tBodies[0];
    body.replaceChildren();
    if (!rows.length) {
      const tr = body.insertRow();
      tr.className = "none";
      const td = cell(tr, emptyText);
      td.colSpan = $(id).tHead.rows[0].cells.length;
      return;
    }
    rows.forEach((r) => build(body.insertRow(), r));
  }

  function fmtInt(v) {
    return typeof v === "number" ? v.toLocaleString("en-US") : "–";
  }

  function fmtDuration(s) {
    if (s === null || s === undefined) return "–";
    s = Math.round(s);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return h ? h + "h " + m + "m" : m ? m + "m " + sec + "s" : sec + "s";
  }

  const fmtClock = C.isoLocal; // 2026-12-05T03:15:00+01:00, as in the terminal

  /* The live forecast (anvil_cli/policy/forecast.py, the same model as `anvil plan`): "$1.20 ($1.10–$1.31)". */
  function fmtProjected(r) {
    if (!r) return "–";
    const spread = r.p90 > r.p10 ? " (" + C.fmtUsd(r.p10) + "–" + C.fmtUsd(r.p90) + ")" : "";
    return C.fmtUsd(r.expected) + spread;
  }

  function fmtPct(v) {
    return v === null || v === undefined ? "–" : v.toFixed(1) + "%";
  }

  /* ---- the page, from one status (and the samples so far) ------------------------------ */

  function renderHeader(st) {
    text($("run-id"), st.run_id);
    const state = st.state || "";
    text($("run-state"), state);
    $("run-state").dataset.state = state;
    text($("mode-note"), (st.mode === "batches" ? "Message Batches · " : "") + (st.batch_path || ""));
    const c = st.counts || {};
    const pct = typeof st.progress_pct === "number" ? st.progress_pct : 0;
    $("progress").value = pct;
    text($("progress-pct"), pct.toFixed(1) + "%");
    text($("eta"), st.eta_s === null || st.eta_s === undefined ? "–" : fmtDuration(st.eta_s));
    ["done", "succeeded", "failed", "running", "pending", "total"].forEach((k) => text($("count-" + k), fmtInt(c[k])));
    text($("tool-errors"), fmtInt(toolErrors(st)));
    $("tool-errors").classList.toggle("bad", toolErrors(st) > 0);
    text($("cost"), C.fmtUsd(typeof st.cost_usd === "number" ? st.cost_usd : (st.cost || {}).so_far_usd));
    text($("projected"), fmtProjected((st.cost || {}).projected_range_usd));
    text($("elapsed"), fmtDuration(st.duration_s !== undefined ? st.duration_s : st.elapsed_s));
    document.title = "Anvil " + state + " · " + fmtInt(c.done) + "/" + fmtInt(c.total);
  }

  /* Failed tool calls: the journal's count over the whole run (`anvil status`), else the session's. */
  function toolErrors(st) {
    return typeof st.tool_errors === "number" ? st.tool_errors : (st.errors || {}).tool_errors || 0;
  }

  function describeToolError(e) {
    return e ? e.tool + " " + e.kind + ": " + (e.message || "") : "–";
  }

  /* Jobs whose tool calls failed: the report lists them (rows from the journal); a live run shows
     its latest failed call. */
  function renderToolErrors(rows, title) {
    $("tool-errors-panel").hidden = !rows.length;
    text($("tool-errors-title"), title);
    fillTable("tool-errors-table", rows, "no tool error", (tr, r) => {
      cell(tr, r.id !== undefined ? r.id : "#" + r.seq, "mono msg");
      cell(tr, r.tool, "mono");
      cell(tr, r.kind, "mono");
      cell(tr, r.count === undefined ? "–" : fmtInt(r.count));
      cell(tr, r.message, "msg");
    });
  }

  function renderModels(st, last, live) {
    const latency = st.call_latency_by_model_s || {};
    const breakers = st.breakers || {};
    const models = Array.from(new Set(Object.keys(latency).concat(Object.keys(breakers)))).sort();
    const recent = (last && last.latency_by_model_s) || {};
    fillTable("models-table", models, "no calls yet", (tr, m) => {
      const l = latency[m] || {};
      cell(tr, m, "mono");
      cell(tr, fmtInt(l.count));
      cell(tr, C.fmtSeconds(l.p50));
      cell(tr, C.fmtSeconds(l.p95));
      cell(tr, C.fmtSeconds(l.p99));
      cell(tr, C.fmtSeconds((recent[m] || {}).p95));
      const state = (breakers[m] || {}).state || "closed";
      cell(tr, state.replace("_", "-"), "breaker-" + state);
      const actions = cell(tr, "", "live-only");
      if (live) {
        actions.append(breakerButton(m, "open"), breakerButton(m, "close"));
      }
    });
  }

  function breakerButton(model, action) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "small";
    b.dataset.breaker = action;
    b.dataset.model = model;
    text(b, action);
    b.addEventListener("click", () => {
      const what = action === "open"
        ? "Force the circuit breaker of " + model + " open? Its jobs wait (or use a fallback) until it is closed."
        : "Close the circuit breaker of " + model + "? Its jobs are sent again.";
      control("/breakers/" + encodeURIComponent(model) + "/" + action, undefined, what, "breaker " + action);
    });
    return b;
  }

  function renderPools(st) {
    const pools = st.limits || {};
    fillTable("pools-table", Object.keys(pools).sort(), "no rate-limit pools yet", (tr, name) => {
      const p = pools[name];
      const dims = p.dimensions || {};
      cell(tr, name, "mono");
      cell(tr, p.paused_for_s ? "paused " + p.paused_for_s.toFixed(1) + " s" : p.binding || "–");
      ["requests", "input_tokens", "output_tokens"].forEach((d) => cell(tr, fmtPct((dims[d] || {}).in_use_pct)));
    });
  }

  /* Named endpoints (`endpoints:`): calls and cost over the whole run, from the journal
     (anvil_cli/snapshot/endpoints.py); the panel stays hidden on a run without them. */
  function renderEndpoints(st) {
    const endpoints = st.endpoints || {};
    const names = Object.keys(endpoints).sort();
    $("endpoints-panel").hidden = !names.length;
    fillTable("endpoints-table", names, "no named endpoints", (tr, name) => {
      const e = endpoints[name];
      cell(tr, name, "mono");
      cell(tr, fmtInt(e.calls), "num");
      cell(tr, fmtPct(e.calls_share_pct), "num");
      cell(tr, C.fmtUsd(e.cost_usd), "num");
      cell(tr, fmtPct(e.cost_share_pct), "num");
      cell(tr, fmtInt(e.errors), "num");
      cell(tr, fmtInt(e.rate_limited), "num");
      cell(tr, fmtInt(e.open_breakers), e.open_breakers ? "num sev-high" : "num");
    });
  }

  /* How the answers fared against their output schemas and checks (anvil_cli/snapshot/checks.py),
     by model, by variant and by each metadata key of `checks.by`; judges' cost shown apart. The
     panel stays hidden on a run without checks. */
  function renderChecks(st) {
    const k = st.checks;
    $("checks-panel").hidden = !k;
    if (!k) return;
    const share = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%");
    const score = (v) => (v === null || v === undefined ? "–" : v.toFixed(2));
    const line = [fmtInt(k.passed) + "/" + fmtInt(k.checked) + " passed (" + share(k.pass_rate) + ")",
      "mean score " + score(k.mean_score), fmtInt(k.reasks) + " re-asks (" + C.fmtUsd(k.reask_cost_usd) + ")",
      "judges " + C.fmtUsd(k.judge_cost_usd)];
    text($("checks-line"), "· " + line.join(" · "));
    const rows = [];
    const add = (by, groups) => Object.keys(groups || {}).sort().forEach((name) => rows.push([by, name, groups[name]]));
    add("model", k.by_model);
    add("variant", k.by_variant);
    Object.keys(k.by || {}).sort().forEach((key) => add("metadata." + key, k.by[key]));
    fillTable("checks-table", rows, "no groups", (tr, [by, name, g]) => {
      cell(tr, by, "muted");
      cell(tr, name, "mono");
      cell(tr, fmtInt(g.checked), "num");
      cell(tr, fmtInt(g.passed), "num");
      cell(tr, share(g.pass_rate), g.checked > g.passed ? "num sev-medium" : "num");
      cell(tr, score(g.mean_score), "num");
      cell(tr, fmtInt(g.jobs), "num");
      cell(tr, C.fmtUsd(g.cost_usd), "num");
    });
  }

  function renderWorkers(st) {
    const w = st.workers || { list: [] };
    const ended = ENDED.indexOf(st.state) >= 0; // its workers have gone with it: no alarm
    const nodes = new Set((w.list || []).filter((r) => r.node).map((r) => r.node));
    const where = nodes.size > 1 ? " on " + nodes.size + " nodes" : "";
    const alive = ended ? "the run has ended" : fmtInt(w.alive) + " alive of " + fmtInt(w.count) + where;
    text($("workers-note"), alive + " · " + fmtInt(w.restarts) + " restarts");
    fillTable("workers-table", w.list || [], "no workers (the run is not running)", (tr, r) => {
      cell(tr, r.id);
      cell(tr, r.node || "this machine");
      cell(tr, r.pid);
      if (ended) cell(tr, "ended");
      else cell(tr, r.alive ? "yes" : "no", r.alive ? "" : "sev-high");
      cell(tr, fmtInt(r.jobs));
    });
  }

  function renderAlerts(rows, report) {
    text($("alerts-title"), report ? "Alerts raised and cleared" : "Active alerts");
    fillTable("alerts-table", rows, report ? "no alert during the run" : "no active alert", (tr, a) => {
      cell(tr, fmtClock(a.since || a.at) + (a.change ? " " + a.change : ""));
      cell(tr, a.severity, "sev-" + a.severity);
      cell(tr, a.name, "mono");
      cell(tr, a.message, "msg");
    });
  }

  function renderFailures(rows, title) {
    text($("failures-title"), title);
    fillTable("failures-table", rows, "no failed job", (tr, f) => {
      cell(tr, f.id !== undefined ? f.id : "#" + f.seq, "mono msg");
      cell(tr, f.model, "mono");
      cell(tr, f.type, "mono");
      cell(tr, f.status_code === null || f.status_code === undefined ? "–" : f.status_code);
      cell(tr, f.message, "msg");
    });
  }

  /* As `anvil status` words them (anvil_cli/snapshot/history.py describe_event). */
  function describeEvent(e) {
    if (e.kind === "breaker") {
      const failures = e.state === "open" && e.failures ? " (" + e.failures + " failures)" : "";
      return "breaker " + e.model + " " + e.state + failures;
    }
    const why = [];
    if (e.busy !== null && e.busy !== undefined) why.push(e.busy + " busy");
    if (e.limiter_pct !== null && e.limiter_pct !== undefined) why.push("rate limit " + e.limiter_pct.toFixed(0) + "% used");
    return "agents " + e.agents_from + " → " + e.agents_to + (why.length ? " (" + why.join(", ") + ")" : "");
  }

  function renderHistory(st) {
    const events = (st.history || []).slice(-20).reverse();
    fillTable("history-table", events, "no breaker opened, no scaling", (tr, e) => {
      cell(tr, fmtClock(e.at));
      cell(tr, describeEvent(e), "msg");
    });
  }

  function renderSummary(st) {
    const m = st.metrics || {};
    const lat = m.call_latency_s || {};
    const job = m.job_time_s || m.latency_s || {};
    const tok = m.tokens || {};
    const rows = [
      ["batch", st.batch_path],
      ["state", st.state + (st.stop_reason ? " (" + st.stop_reason + ")" : "")],
      ["started", fmtClock(st.created_at)],
      ["ended", st.ended_at ? fmtClock(st.ended_at) : st.live ? "still running" : "–"],
      ["took", fmtDuration(st.duration_s)],
      ["throughput", typeof m.jobs_per_s === "number" ? m.jobs_per_s.toFixed(2) + " jobs/s" : "–"],
      ["API call latency", "p50 " + C.fmtSeconds(lat.p50) + " · p95 " + C.fmtSeconds(lat.p95) + " · p99 " + C.fmtSeconds(lat.p99)],
      ["job time", "p50 " + C.fmtSeconds(job.p50) + " · p95 " + C.fmtSeconds(job.p95) + " · p99 " + C.fmtSeconds(job.p99)],
      ["calls", fmtInt(m.api_calls) + " · retries " + fmtInt(m.retries) + " · 429s " + fmtInt(m.rate_limited)],
      ["tool errors", fmtInt(toolErrors(st)) + (toolErrors(st) ? " · last: " + describeToolError((st.errors || {}).last_tool_error) : "")],
      ["tokens", "in " + fmtInt(tok.input) + " · out " + fmtInt(tok.output)],
      ["cost", C.fmtUsd(st.cost_usd)],
    ];
    if (st.resume_command) rows.push(["resume with", st.resume_command]);
    const dl = $("summary-list");
    dl.replaceChildren();
    rows.forEach(([k, v]) => {
      dl.appendChild(text(document.createElement("dt"), k));
      dl.appendChild(text(document.createElement("dd"), v === undefined || v === null ? "–" : v));
    });
    $("summary").hidden = false;
  }

  function render(st, samples, live) {
    const last = samples.length ? samples[samples.length - 1] : null;
    renderHeader(st);
    renderModels(st, last, live);
    renderPools(st);
    renderEndpoints(st);
    renderChecks(st);
    renderWorkers(st);
    renderHistory(st);
  }

  /* ---- live mode -------------------------------------------------------------------------- */

  class AuthError extends Error {}

  let token = null;
  let samples = [];
  let since = null;
  let charts = null;
  let timer = null;

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + token };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, {
      method: method,
      headers: headers,
      body: body === undefined ? (method === "POST" ? "" : undefined) : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
      redirect: "error",
    });
    if (resp.status === 401) throw new AuthError("the token was refused");
    const data = await resp.json().catch(() => null);
    if (!resp.ok) throw new Error((data && data.error) || resp.status + " " + resp.statusText);
    return data;
  }

  function addSamples(list) {
    for (const s of list) {
      if (!samples.length || s.t > samples[samples.length - 1].t) samples.push(s);
    }
    if (samples.length > MAX_SAMPLES) {
      const half = Math.floor(samples.length / 2);
      samples = samples.slice(0, half).filter((_, i) => i % 2 === 0).concat(samples.slice(half));
    }
    if (samples.length) since = samples[samples.length - 1].t;
  }

  function setConnection(message, bad) {
    const p = $("connection");
    text(p, message);
    p.classList.toggle("bad", Boolean(bad));
  }

  /* Every control that steers the run (pause, resume, drain, scale, the breakers): off once the
     run has ended, and while it cannot be reached. */
  function setSteerable(on) {
    document.querySelectorAll("#controls button, #controls input, button[data-breaker]").forEach((el) => {
      el.disabled = !on;
    });
  }

  function updateControls(st) {
    const ended = ENDED.indexOf(st.state) >= 0 || !st.live;
    const stopping = st.state === "stopping";
    setSteerable(!ended);
    $("btn-pause").disabled = ended || stopping || st.paused;
    $("btn-resume").disabled = ended || stopping || !st.paused;
    $("btn-drain").disabled = ended || stopping;
    const scale = $("scale-input");
    const agents = st.agents || {};
    if (agents.max) scale.max = agents.max;
    if (agents.min) scale.min = agents.min;
    if (document.activeElement !== scale && agents.limit) scale.placeholder = agents.limit;
  }

  let failures = 0; // polls failed in a row: retry less often while the run is unreachable

  let session = 0; // bumped at each sign-in and sign-out: a poll of an earlier one stops there

  async function poll() {
    timer = null;
    const mine = session;
    try {
      const query = since === null ? "" : "?since=" + encodeURIComponent(since);
      const [st, series] = await Promise.all([api("GET", "/status"), api("GET", "/series" + query)]);
      if (mine !== session) return;
      addSamples(series.samples || []);
      render(st, samples, true);
      renderAlerts(st.alerts || [], false);
      renderFailures(((st.errors || {}).last_failures || []).slice().reverse(), "Last failures");
      const lastTool = (st.errors || {}).last_tool_error;
      renderToolErrors(lastTool ? [lastTool] : [], "Last tool error (" + fmtInt(toolErrors(st)) + " failed tool calls)");
      updateControls(st);
      charts.update(samples);
      const when = fmtClock(Date.now() / 1000);
      setConnection(st.live ? "live · updated " + when : "the run is " + st.state + " · updated " + when, false);
      $("app").dataset.ready = "1";
      failures = 0;
      if (ENDED.indexOf(st.state) >= 0) {
        // the final state stays on the page: nothing more will change, and its server is going away
        setConnection("the run has ended: " + st.state + " · " + when, false);
        return;
      }
    } catch (err) {
      if (mine !== session) return;
      if (err instanceof AuthError) {
        signOut("The token was refused. Paste the run's API token.");
        return;
      }
      failures += 1;
      connectionLost(err.message);
    }
    timer = setTimeout(poll, Math.min(POLL_MS * 2 ** failures, MAX_RETRY_MS));
  }

  /* The run does not answer: say so where its state was, and steer nothing until it answers. */
  function connectionLost(why) {
    text($("run-state"), "connection lost");
    $("run-state").dataset.state = "lost";
    setSteerable(false);
    document.title = "Anvil · connection lost";
    setConnection("connection lost: cannot reach the run (" + why + "); it may have ended. Retrying…", true);
  }

  async function control(path, body, question, label) {
    if (!window.confirm(question)) return;
    const out = $("control-result");
    try {
      await api("POST", path, body);
      text(out, label + ": done");
    } catch (err) {
      if (err instanceof AuthError) return signOut("The token was refused. Paste the run's API token.");
      text(out, label + " failed: " + err.message);
    }
  }

  function wireControls() {
    $("btn-pause").addEventListener("click", () =>
      control("/pause", undefined, "Pause the run? No new job starts; calls in flight finish.", "pause"));
    $("btn-resume").addEventListener("click", () =>
      control("/resume", undefined, "Resume the run?", "resume"));
    $("btn-drain").addEventListener("click", () =>
      control("/drain", undefined, "Drain and stop the run? Calls in flight finish, nothing more is sent, " +
        "then the run ends (exit 130). Run the same command again to resume it.", "drain"));
    $("scale-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const n = parseInt($("scale-input").value, 10);
      if (!Number.isInteger(n)) return;
      control("/scale", { agents: n }, "Set the agent limit to " + n + "?", "scale to " + n);
    });
    $("lookup-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const id = $("lookup-input").value.trim();
      const out = $("lookup-result");
      if (!id) return;
      try {
        text(out, JSON.stringify(await api("GET", "/jobs/" + encodeURIComponent(id)), null, 2));
      } catch (err) {
        if (err instanceof AuthError) return signOut("The token was refused. Paste the run's API token.");
        text(out, err.message);
      }
    });
  }

  function signOut(message) {
    session += 1;
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    if (timer !== null) clearTimeout(timer);
    timer = null;
    $("app").hidden = true;
    $("login").hidden = false;
    const err = $("login-error");
    text(err, message || "");
    err.hidden = !message;
    $("token-input").focus();
  }

  function signIn(value) {
    session += 1;
    token = value;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("login").hidden = true;
    $("app").hidden = false;
    if (charts === null) charts = C.mount($("charts"));
    if (timer !== null) clearTimeout(timer);
    poll();
  }

  function tokenFromAddress() {
    // The fragment never reaches the server (nor its logs); take it and wipe it from the address bar.
    if (!location.hash) return null;
    const found = new URLSearchParams(location.hash.slice(1)).get("token");
    history.replaceState(null, "", location.pathname + location.search);
    return found;
  }

  function live() {
    wireControls();
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = $("token-input").value.trim();
      $("token-input").value = "";
      if (value) signIn(value);
    });
    const given = tokenFromAddress() || sessionStorage.getItem(TOKEN_KEY);
    if (given) signIn(given);
    else signOut("");
  }

  /* ---- report mode ------------------------------------------------------------------------ */

  function report(data) {
    document.body.classList.add("report"); // hides the controls and what only a live run has
    $("app").hidden = false;
    const st = data.status;
    const all = data.samples || [];
    render(st, all, false);
    renderSummary(st);
    renderAlerts(data.alert_events || [], true);
    const failures = data.failures || [];
    const more = data.failure_count > failures.length ? " (the first " + failures.length + ")" : "";
    renderFailures(failures, "Failures: " + fmtInt(data.failure_count || 0) + more);
    const tools = data.tool_error_jobs || [];
    const moreTools = data.tool_error_job_count > tools.length ? " (the first " + tools.length + ")" : "";
    renderToolErrors(tools, "Jobs with tool errors: " + fmtInt(data.tool_error_job_count || 0) + moreTools +
      " · failed tool calls: " + fmtInt(toolErrors(st)));
    C.mount($("charts"), "too few samples in the journal to draw").update(all);
    const thinned = data.sample_count > all.length ? " (thinned from " + fmtInt(data.sample_count) + ")" : "";
    text($("connection"), "report of run " + st.run_id + ", written " + fmtClock(data.generated_at));
    text($("footer"), "anvil report · " + fmtInt(all.length) + " samples" + thinned +
      " · charts by uPlot " + (data.uplot_version || ""));
    $("app").dataset.ready = "1";
  }

  const embedded = document.getElementById("anvil-data");
  if (embedded) report(JSON.parse(embedded.textContent));
  else live();
})();
