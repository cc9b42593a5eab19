/* Anvil's charts: the run's samples (anvil_cli/snapshot/series.py) drawn with uPlot. The same code draws
   the live page and the report; it only ever reads the list of samples it is given. */
(function () {
  "use strict";

  const RATE_WINDOW_S = 60; // a rate at a sample: its change over the minute before it
  const HEIGHT = 220;
  const COLORS = ["#2f6fde", "#e8710a", "#1f883d", "#cf222e", "#8250df", "#0aa1c0", "#b7791f",
    "#d63384", "#6e7781", "#3b8eea"];

  function num(v) {
    return typeof v === "number" && isFinite(v) ? v : null;
  }

  function fmtNum(v, digits) {
    if (v === null || v === undefined) return "–";
    const abs = Math.abs(v);
    if (abs >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (abs >= 1e4) return (v / 1e3).toFixed(1) + "k";
    return v.toFixed(digits === undefined ? (abs >= 100 || Number.isInteger(v) ? 0 : 2) : digits);
  }

  /* A latency to three figures at least (within 0.5%): "3.42 ms", "412 ms", "1.25 s", "12.3 s". */
  function fmtSeconds(v) {
    if (v === null || v === undefined) return "–";
    if (v < 0.1) return (v * 1000).toPrecision(3) + " ms";
    return v < 1 ? Math.round(v * 1000) + " ms" : v.toFixed(v < 10 ? 2 : 1) + " s";
  }

  /* A moment as Anvil writes it everywhere (anvil_cli/timefmt.py): ISO 8601 in the browser's
     zone, to the second, with the zone's offset: 2026-12-05T03:15:00+01:00. */
  function isoLocal(unixS) {
    if (!unixS) return "–";
    const d = new Date(Math.floor(unixS) * 1000);
    const p = (n) => String(n).padStart(2, "0");
    const offMin = -d.getTimezoneOffset();
    const zone = (offMin < 0 ? "-" : "+") + p(Math.floor(Math.abs(offMin) / 60)) + ":" + p(Math.abs(offMin) % 60);
    return String(d.getFullYear()).padStart(4, "0") + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) +
      "T" + p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds()) + zone;
  }

  function fmtUsd(v) {
    if (v === null || v === undefined) return "–";
    return "$" + (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(4));
  }

  /* Per minute over the last RATE_WINDOW_S of a cumulative figure of the session; across a
     thinned series, between neighbours. null where it cannot be known (a session's first). */
  function ratePerMin(samples, get) {
    const out = new Array(samples.length).fill(null);
    for (let i = 0; i < samples.length; i++) {
      const s = samples[i];
      let j = i;
      while (j > 0 && samples[j - 1].session === s.session && samples[j - 1].t >= s.t - RATE_WINDOW_S) j--;
      if (j === i && i > 0 && samples[i - 1].session === s.session) j = i - 1;
      const dt = s.t - samples[j].t;
      if (j < i && dt > 0) out[i] = (Math.max(0, get(s) - get(samples[j])) / dt) * 60;
    }
    return out;
  }

  function keysOf(samples, get) {
    const keys = new Set();
    for (const s of samples) for (const k of Object.keys(get(s) || {})) keys.add(k);
    return Array.from(keys).sort();
  }

  function line(label, values, opts) {
    return Object.assign({ label: label, values: values, scale: "y" }, opts || {});
  }

  /* Each chart: a title, and the lines it draws from the samples. */
  const CHARTS = [
    {
      id: "throughput",
      title: "Throughput",
      y: { label: "jobs/s", fmt: fmtNum },
      y2: { label: "requests/min", fmt: fmtNum },
      lines: (ss) => [
        line("jobs/s", ss.map((s) => num(s.jobs_per_s))),
        line("requests/min", ss.map((s) => num(s.requests_per_min)), { scale: "y2" }),
      ],
    },
    {
      id: "latency",
      title: "API call latency (calls of the last 10 s)",
      y: { label: "", fmt: fmtSeconds },
      lines: (ss) => {
        const out = ["p50", "p95", "p99"].map((p) => line(p, ss.map((s) => num((s.latency_s || {})[p]))));
        const models = keysOf(ss, (s) => s.latency_by_model_s);
        if (models.length > 1) {
          for (const m of models) {
            const vals = ss.map((s) => num(((s.latency_by_model_s || {})[m] || {}).p95));
            out.push(line("p95 " + m, vals, { dash: [4, 4] }));
          }
        }
        return out;
      },
    },
    {
      id: "errors",
      title: "Failed calls and 429s per minute, by type",
      y: { label: "per min", fmt: fmtNum },
      lines: (ss) => {
        const out = [line("429s", ratePerMin(ss, (s) => s.rate_limited || 0))];
        for (const type of keysOf(ss, (s) => s.errors_by_type)) {
          out.push(line(type, ratePerMin(ss, (s) => (s.errors_by_type || {})[type] || 0)));
        }
        return out;
      },
    },
    {
      id: "cost",
      title: "Cost",
      y: { label: "USD", fmt: fmtUsd },
      y2: { label: "USD/hour", fmt: fmtUsd },
      lines: (ss) => {
        const out = [
          line("cost so far", ss.map((s) => num(s.cost_usd))),
          line("per hour", ss.map((s) => num(s.cost_per_hour_usd)), { scale: "y2" }),
        ];
        if (ss.some((s) => num(s.budget_max_usd) !== null)) {
          out.push(line("budget", ss.map((s) => num(s.budget_max_usd)), { dash: [8, 4], color: "#cf222e" }));
        }
        return out;
      },
    },
    {
      id: "agents",
      title: "Agents in flight and their limit",
      y: { label: "agents", fmt: fmtNum },
      lines: (ss) => [
        line("in flight", ss.map((s) => num(s.agents_in_flight))),
        line("limit", ss.map((s) => num(s.agents_limit)), { dash: [6, 3] }),
      ],
    },
    {
      id: "limiter",
      title: "Rate-limit use per pool (its most used dimension)",
      y: { label: "%", fmt: (v) => fmtNum(v, 0) + "%", range: [0, 100] },
      lines: (ss) => keysOf(ss, (s) => s.pools).map((pool) =>
        line(pool, ss.map((s) => num(((s.pools || {})[pool] || {}).in_use_pct)))),
    },
    {
      id: "jobs",
      title: "Jobs done",
      y: { label: "jobs", fmt: fmtNum },
      lines: (ss) => [
        line("succeeded", ss.map((s) => num((s.counts || {}).succeeded)), { color: "#1f883d" }),
        line("failed", ss.map((s) => num((s.counts || {}).failed)), { color: "#cf222e" }),
        line("running", ss.map((s) => num((s.counts || {}).running)), { dash: [4, 4], color: "#2f6fde" }),
      ],
    },
  ];

  function cssVar(name, fallback) {
    const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  function axis(spec, scale, side) {
    const fg = cssVar("--muted", "#6b7079");
    return {
      scale: scale,
      side: side,
      label: spec.label,
      stroke: fg,
      size: 60,
      grid: { show: side === 3, stroke: cssVar("--line", "#dfe1e5"), width: 1 },
      ticks: { stroke: cssVar("--line", "#dfe1e5"), width: 1 },
      values: (u, vals) => vals.map((v) => spec.fmt(v)),
    };
  }

  function options(def, lines, width) {
    const scales = { x: { time: true }, y: def.y.range ? { range: def.y.range } : {} };
    // the time axis in Anvil's one format too (ISO 8601, local): each tick its time of day
    // (the ISO shape's HH:MM:SS), the legend the whole moment with its date and zone
    const timeAxis = { stroke: cssVar("--muted", "#6b7079"), grid: { stroke: cssVar("--line", "#dfe1e5"), width: 1 },
      values: (u, vals) => vals.map((v) => (v === null ? "" : isoLocal(v).slice(11, 19))) };
    const axes = [timeAxis, axis(def.y, "y", 3)];
    if (def.y2) {
      scales.y2 = {};
      axes.push(axis(def.y2, "y2", 1));
    }
    const series = [{ label: "time", value: (u, v) => (v === null ? "–" : isoLocal(v)) }];
    lines.forEach((l, i) => {
      const spec = l.scale === "y2" ? def.y2 : def.y;
      series.push({
        label: l.label,
        scale: l.scale,
        stroke: l.color || COLORS[i % COLORS.length],
        width: 1.5,
        dash: l.dash,
        spanGaps: false,
        points: { show: false },
        value: (u, v) => spec.fmt(v),
      });
    });
    return { width: width, height: HEIGHT, scales: scales, axes: axes, series: series,
      cursor: { drag: { x: true, y: false } }, legend: { live: true } };
  }

  /* One chart on the page: a panel with a title, (re)drawn from the samples. */
  class Chart {
    constructor(def, parent) {
      this.def = def;
      this.plot = null;
      this.key = "";
      this.box = document.createElement("div");
      this.box.className = "chart";
      this.box.dataset.chart = def.id;
      this.box.dataset.points = "0";
      this.box.dataset.drawn = "0";
      const h = document.createElement("h2");
      h.textContent = def.title;
      this.area = document.createElement("div");
      this.area.className = "plot";
      this.empty = document.createElement("div");
      this.empty.className = "empty";
      this.empty.textContent = "waiting for data…";
      this.area.appendChild(this.empty);
      this.box.append(h, this.area);
      parent.appendChild(this.box);
    }

    width() {
      return Math.max(240, this.area.clientWidth || 400);
    }

    update(samples) {
      const lines = this.def.lines(samples);
      const data = [samples.map((s) => s.t)].concat(lines.map((l) => l.values));
      const key = lines.map((l) => l.label + "/" + l.scale).join("|");
      if (samples.length < 2 || lines.length === 0) {
        this.box.dataset.points = String(samples.length);
        return;
      }
      this.empty.hidden = true;
      if (this.plot === null || key !== this.key) {
        if (this.plot !== null) this.plot.destroy();
        this.plot = new uPlot(options(this.def, lines, this.width()), data, this.area);
        this.key = key;
      } else {
        this.plot.setData(data);
      }
      const drawn = lines.map((l) => l.values.filter((v) => v !== null).length);
      this.box.dataset.points = String(samples.length);
      this.box.dataset.series = String(lines.length);
      this.box.dataset.drawn = String(Math.min.apply(null, drawn));
    }

    resize() {
      if (this.plot !== null) this.plot.setSize({ width: this.width(), height: HEIGHT });
    }
  }

  /* All the charts, in `parent`, resized with it; `emptyText` until there are two samples. */
  function mount(parent, emptyText) {
    const charts = CHARTS.map((def) => new Chart(def, parent));
    if (emptyText) charts.forEach((c) => { c.empty.textContent = emptyText; });
    if (typeof ResizeObserver === "function") {
      let pending = false;
      new ResizeObserver(() => {
        if (pending) return;
        pending = true;
        requestAnimationFrame(() => {
          pending = false;
          charts.forEach((c) => c.resize());
        });
      }).observe(parent);
    }
    return { update: (samples) => charts.forEach((c) => c.update(samples)) };
  }

  window.AnvilCharts = { mount: mount, fmtNum: fmtNum, fmtSeconds: fmtSeconds, fmtUsd: fmtUsd, isoLocal: isoLocal };
})();
