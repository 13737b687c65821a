"use strict";
// negminer's page: fine-tuning jobs, indexes and mining reports, read from the REST API. No framework and no
// charting library: the charts are small SVGs drawn below (lines by step, histograms by count), so the page is
// three files shipped in the package with nothing to build or download.

const KEY = "negminer-api-key";
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const $ = (selector) => document.querySelector(selector);
let view = 0; // bumped on every navigation: a poll of an older view stops

class Unauthorized extends Error {}

// -- talking to the API ---------------------------------------------------------------------------------------
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = "Bearer " + key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401) throw new Unauthorized();
  const type = r.headers.get("content-type") || "";
  const data = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error((data && (data.detail || data.title)) || r.statusText);
  return data;
}

async function allEvents(jobId, after) {
  const out = [];
  for (;;) {
    const q = new URLSearchParams({ order: "asc", limit: "1000" });
    if (after) q.set("after", after);
    const page = await api("GET", `/v1/fine_tuning/jobs/${encodeURIComponent(jobId)}/events?${q}`);
    out.push(...page.data);
    if (!page.has_more || !page.data.length) return out;
    after = page.data[page.data.length - 1].id;
  }
}

// -- building the page (text is always set as text, never parsed as HTML) -------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

const clip = (text, n) => (text.length > n ? text.slice(0, n - 1) + "…" : text);
const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "");
const fmt = (x, digits = 4) => (typeof x === "number" ? (Number.isInteger(x) ? x.toLocaleString() : x.toFixed(digits)) : x ?? "");
const badge = (status) => el("span", { class: `status ${status}` }, status);
const table = (head, rows) => el("table", {}, el("tr", {}, head.map((h) => el("th", {}, h))), rows);
const td = (value, numeric) => el("td", numeric ? { class: "num" } : {}, value);

function show(...nodes) {
  $("#main").replaceChildren(...nodes.filter((n) => n !== null && n !== undefined));
}

function fail(error) {
  if (error instanceof Unauthorized) return askForKey();
  show(el("p", { class: "error-box" }, String(error.message || error)));
}

// -- charts ---------------------------------------------------------------------------------------------------
const W = 540, H = 260, L = 52, R = 14, T = 40, B = 40;  // T: the title and the legend sit above the plot

// [min, max] of values, widened to at least minSpan (a 0.009 dip of a score must not fill the chart) and, for
// whole numbers (counts, steps), to whole-number ends
function range(values, minSpan = 0, whole = false, bounds = null) {
  let min = Math.min(...values), max = Math.max(...values);
  if (max - min < minSpan) { const mid = (min + max) / 2; min = mid - minSpan / 2; max = mid + minSpan / 2; }
  if (bounds && max > bounds[1]) { min -= max - bounds[1]; max = bounds[1]; }  // a score never passes 1
  if (bounds && min < bounds[0]) { max += bounds[0] - min; min = bounds[0]; }
  if (!(max > min)) { min -= 0.5; max += 0.5; }
  if (whole) { min = Math.floor(min); max = Math.ceil(max); }
  return [min, max];
}

function scaleOf([min, max], lo, hi) {
  return (v) => lo + ((v - min) / (max - min)) * (hi - lo);
}

function ticks(min, max, whole, n = 4) {
  if (!whole) return Array.from({ length: n + 1 }, (_, i) => min + ((max - min) * i) / n);
  const step = Math.max(1, Math.ceil((max - min) / n));  // whole numbers only: no 2.5 of a count
  const out = [];
  for (let v = min; v <= max; v += step) out.push(v);
  return out;
}

// opts: {minSpan: smallest y range, wholeY: counts, bounds: [lo, hi] the values cannot leave (scores: [0, 1])}
function frame(title, xs, ys, xLabel, yLabel, opts = {}) {
  const wide = Math.max(...xs) - Math.min(...xs) >= 10; // steps: whole numbers
  const [x0, x1] = range(xs, 0, wide), [y0, y1] = range(ys, opts.minSpan || 0, opts.wholeY);
  const sx = scaleOf([x0, x1], L, W - R), sy = scaleOf([y0, y1], H - B, T);
  const root = svg("svg", { class: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" },
    svg("text", { class: "title", x: L, y: 16 }, title),
    svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }),
    svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }),
    svg("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }, xLabel),
    svg("text", { x: 12, y: (T + H - B) / 2, transform: `rotate(-90 12 ${(T + H - B) / 2})`, "text-anchor": "middle" }, yLabel));
  for (const v of ticks(x0, x1, wide)) root.append(svg("text", { x: sx(v), y: H - B + 14, "text-anchor": "middle" }, wide ? Math.round(v) : fmt(v, 2)));
  for (const v of ticks(y0, y1, opts.wholeY)) root.append(svg("text", { x: L - 4, y: sy(v) + 4, "text-anchor": "end" }, opts.wholeY ? v.toLocaleString() : fmt(v, 3)));
  return { root, sx, sy };
}

// one row between the title and the plot, so no point is ever drawn under it
function legend(root, names) {
  let x = L;
  names.forEach((name, i) => {
    root.append(svg("rect", { class: `s${i}`, x, y: 22, width: 10, height: 10 }),
      svg("text", { x: x + 14, y: 31 }, name));
    x += 24 + 7 * name.length;
  });
}

// series: [{name, points: [[step, value], ...]}]; markers: steps drawn as dashed lines (new negatives)
function lineChart(title, series, markers, yLabel, opts = {}) {
  series = series.filter((s) => s.points.length);
  if (!series.length) return el("p", { class: "empty", "data-chart": title }, `${title}: nothing logged yet`);
  const xs = series.flatMap((s) => s.points.map((p) => p[0])).concat(markers);
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const { root, sx, sy } = frame(title, xs, ys, "step", yLabel, opts);
  root.setAttribute("data-chart", title);
  for (const m of markers) root.append(svg("line", { class: "marker", x1: sx(m), y1: T, x2: sx(m), y2: H - B }));
  series.forEach((s, i) => {
    root.append(svg("polyline", { class: `s${i}`, "data-series": s.name, points: s.points.map((p) => `${sx(p[0])},${sy(p[1])}`).join(" ") }));
    for (const p of s.points) root.append(svg("circle", { class: `s${i}`, cx: sx(p[0]), cy: sy(p[1]), r: 2.5 }));
  });
  legend(root, series.map((s) => s.name));
  return root;
}

// histograms: the mining report's {edges, counts: {series: [...]}, totals}, drawn as overlaid bars of counts
function histogram(title, h) {
  if (!h || !h.edges) return el("p", { class: "empty" }, `${title}: no scores`);
  const names = Object.keys(h.counts);
  const counts = names.flatMap((n) => h.counts[n]);
  const { root, sx, sy } = frame(title, h.edges, [0, ...counts], "score (cosine to the query)", "count", { wholeY: true });
  root.setAttribute("data-chart", title);
  names.forEach((name, i) => {
    h.counts[name].forEach((c, b) => {
      if (!c) return;
      const x = sx(h.edges[b]), w = Math.max(1, sx(h.edges[b + 1]) - x);
      root.append(svg("rect", { class: `bar s${i}`, x, y: sy(c), width: w, height: sy(0) - sy(c) }));
    });
  });
  legend(root, names.map((n) => `${n} (${fmt(h.totals[n])})`));
  return root;
}

// -- jobs -----------------------------------------------------------------------------------------------------
async function jobsView(mine) {
  const page = await api("GET", "/v1/fine_tuning/jobs?limit=100");
  if (mine !== view) return;
  const rows = page.data.map((j) => el("tr", {},
    td(el("a", { href: `#job/${j.id}` }, j.id)), td(j.model), td(badge(j.status)), td(when(j.created_at)),
    td(j.trained_steps ?? "", true), td(j.fine_tuned_model || "")));
  show(el("h2", {}, "Fine-tuning jobs"),
    rows.length ? table(["job", "model", "status", "created", "steps", "fine-tuned model"], rows)
      : el("p", { class: "empty" }, "No jobs yet: POST /v1/fine_tuning/jobs (or the OpenAI SDK) creates one."));
  setTimeout(() => mine === view && jobsView(mine).catch(fail), 5000);
}

// the evaluations by step: {step: {"ndcg@10", "recall@100", "mrr@10"}} (the end evaluation included)
function evaluations(events) {
  const out = {};
  for (const e of events) {
    const d = e.data || {};
    if (d.evaluation && typeof d.step === "number") out[d.step] = { ...(out[d.step] || {}), ...d };
  }
  return out;
}

// the newest training log: {step, max_steps}
function lastLog(events) {
  for (let i = events.length - 1; i >= 0; i--) {
    const d = events[i].data || {};
    if (typeof d.train_loss === "number") return d;
  }
  return null;
}

function curves(events) {
  const loss = [], refreshes = [], evals = evaluations(events);
  for (const e of events) {
    const d = e.data || {};
    if (typeof d.train_loss === "number") loss.push([d.step, d.train_loss]);
    if (typeof d.refresh_version === "number" && d.step > 0) refreshes.push(d.step);
  }
  const steps = Object.keys(evals).map(Number).sort((a, b) => a - b);
  const metric = (name) => steps.filter((s) => typeof evals[s][name] === "number").map((s) => [s, evals[s][name]]);
  // each score on its own axis, at least 0.1 high: recall near 1.0 does not squeeze nDCG, a small dip stays small
  return el("div", { class: "charts" },
    lineChart("Training loss", [{ name: "loss", points: loss }], refreshes, "loss"),
    lineChart("nDCG@10 and MRR@10 on the validation queries", [{ name: "nDCG@10", points: metric("ndcg@10") }, { name: "MRR@10", points: metric("mrr@10") }], refreshes, "score", { minSpan: 0.1, bounds: [0, 1] }),
    lineChart("Recall@100 on the validation queries", [{ name: "Recall@100", points: metric("recall@100") }], refreshes, "recall", { minSpan: 0.1, bounds: [0, 1] }));
}

async function download(fileId) {
  const key = sessionStorage.getItem(KEY);
  const r = await fetch(`/v1/files/${encodeURIComponent(fileId)}/content`, { headers: key ? { Authorization: "Bearer " + key } : {} });
  if (r.status === 401) throw new Unauthorized();
  const link = el("a", { href: URL.createObjectURL(await r.blob()), download: `${fileId}.csv` });
  link.click();
}

async function jobView(mine, id) {
  let events = [];
  const draw = async () => {
    const job = await api("GET", `/v1/fine_tuning/jobs/${encodeURIComponent(id)}`);
    events = events.concat(await allEvents(id, events.length ? events[events.length - 1].id : null));
    const checkpoints = await api("GET", `/v1/fine_tuning/jobs/${encodeURIComponent(id)}/checkpoints?limit=100`);
    if (mine !== view) return;
    const running = !TERMINAL.has(job.status);
    const log = lastLog(events), evals = evaluations(events);
    const step = job.trained_steps ?? (log ? log.step : null);
    const total = log && log.max_steps ? log.max_steps : null;
    const progressText = step == null ? (running ? "starting" : "-") : total ? `step ${fmt(step)} of ${fmt(total)}` : `step ${fmt(step)}`;
    const eta = job.estimated_finish ? when(job.estimated_finish) : running ? "after the first logged steps" : "-";
    const cancel = el("button", { type: "button", id: "cancel-job", onclick: async () => {
      try { await api("POST", `/v1/fine_tuning/jobs/${encodeURIComponent(id)}/cancel`); } catch (err) { fail(err); }
    } }, "Cancel job");
    show(
      el("h2", {}, `Job ${job.id} `, badge(job.status), " ", running ? cancel : null),
      el("dl", { class: "kv" },
        el("dt", {}, "model"), el("dd", {}, job.model),
        el("dt", {}, "fine-tuned model"), el("dd", {}, job.fine_tuned_model || "-"),
        el("dt", {}, "created / finished"), el("dd", {}, `${when(job.created_at)} / ${when(job.finished_at) || "-"}`),
        el("dt", {}, "progress"), el("dd", { id: "job-progress" }, progressText),
        el("dt", {}, "estimated finish"), el("dd", { id: "job-eta" }, eta),
        el("dt", {}, "mining filter"), el("dd", {}, (job.hyperparameters.mining || {}).filter || "-")),
      job.error ? el("p", { class: "error-box" }, `${job.error.code}: ${job.error.message}`) : null,
      el("h2", {}, "Curves (dashed: new negatives in use)"), curves(events),
      el("h2", {}, "Checkpoints"),
      checkpoints.data.length ? table(["step", "model name", "nDCG@10", "MRR@10", "training loss"], checkpoints.data.map((c) => {
        const scores = { ...(evals[c.step_number] || {}), ...c.metrics };  // the end evaluation comes after the last checkpoint
        return el("tr", {}, td(c.step_number, true), td(c.fine_tuned_model_checkpoint), td(fmt(scores["ndcg@10"]), true),
          td(fmt(scores["mrr@10"]), true), td(fmt(c.metrics.train_loss), true));
      }))
        : el("p", { class: "empty" }, "none yet"),
      el("h2", {}, "Result files"),
      job.result_files.length ? el("ul", {}, job.result_files.map((f) => el("li", {},
        el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); download(f).catch(fail); } }, `${f} (step_metrics.csv)`))))
        : el("p", { class: "empty" }, "when the job ends"),
      el("h2", {}, `Events (${events.length})`),
      el("div", { class: "events", id: "events" }, events.map((e) =>
        el("div", { class: e.level }, `${new Date(e.created_at * 1000).toLocaleTimeString()}  ${e.message}`))));
    const box = $("#events");
    box.scrollTop = box.scrollHeight;
    if (running) setTimeout(() => mine === view && draw().catch(fail), 2000);
  };
  await draw();
}

// -- indexes --------------------------------------------------------------------------------------------------
function progress(op) {
  if (!op) return "";
  if (op.status !== "running") return `${op.type} ${op.status}${op.error ? `: ${op.error.message}` : ""}`;
  const done = op.to_encode ? ` ${fmt(op.encoded)} / ${fmt(op.to_encode)} texts` : "";
  const eta = op.eta_seconds != null ? `, about ${Math.ceil(op.eta_seconds)} s left` : "";
  return `${op.type}: ${op.stage || "starting"}${done}${eta}`;
}

async function indexesView(mine) {
  const page = await api("GET", "/v1/indexes");
  if (mine !== view) return;
  const rows = page.data.map((i) => el("tr", {},
    td(i.name), td(badge(i.status)), td(i.version ?? "-", true), td(fmt(i.size), true), td(i.model), td(i.kind),
    td(i.recall != null ? fmt(i.recall, 3) : "-", true), td(progress(i.operation) || (i.error ? i.error.message : ""))));
  show(el("h2", {}, "Indexes"),
    rows.length ? table(["name", "status", "version", "documents", "model", "structure", "recall", "operation"], rows)
      : el("p", { class: "empty" }, "No indexes yet: POST /v1/indexes builds one."));
  setTimeout(() => mine === view && indexesView(mine).catch(fail), 3000);
}

// -- mining ---------------------------------------------------------------------------------------------------
function parseQueries(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
    const [query, ids = ""] = line.split("|");
    return { query: query.trim(), positive_ids: ids.split(",").map((s) => s.trim()).filter(Boolean) };
  });
}

function report(answer) {
  const r = answer.report, f = r.filter || {};
  const rules = Object.entries(f.rules || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "no rule";
  const why = f.chosen_by === "default" ? "the default: no filter was named" : "as asked";
  const removed = Object.entries(r.removed).map(([rule, n]) => el("tr", {},
    td(rule), td(fmt(n), true), td(`${(100 * r.removed_share[rule]).toFixed(2)} %`, true)));
  const examples = answer.results.slice(0, 5).map((res) => el("li", {}, el("strong", {}, res.query),
    el("ul", {}, res.negatives.map((n) => el("li", {}, `${n.id} (${fmt(n.score, 3)})${n.text ? ": " + clip(n.text, 160) : ""}`)))));
  return el("section", { id: "report" },
    el("h2", {}, "Mining report"),
    el("p", { id: "filter" }, `Filter: ${f.name} (${rules}; ${why}).`),
    el("dl", { class: "kv" },
      el("dt", {}, "queries"), el("dd", {}, fmt(r.queries)),
      el("dt", {}, "candidates"), el("dd", {}, fmt(r.candidates)),
      el("dt", {}, "negatives"), el("dd", {}, fmt(r.negatives)),
      el("dt", {}, "queries left short"), el("dd", {}, fmt(r.queries_short))),
    removed.length ? table(["rule", "candidates removed", "share"], removed) : el("p", { class: "empty" }, "No rule ran."),
    histogram("Scores (counts)", r.histograms),
    el("h2", {}, "Examples"), el("ul", {}, examples));
}

async function mineView(mine) {
  const page = await api("GET", "/v1/indexes");
  if (mine !== view) return;
  const ready = page.data.filter((i) => i.version != null);
  const out = el("div", { id: "mine-result" });
  const form = el("form", { id: "mine-form", onsubmit: async (ev) => {
    ev.preventDefault();
    out.replaceChildren(el("p", { class: "empty" }, "mining..."));
    try {
      const options = JSON.parse($("#mine-options").value || "{}");
      const body = { queries: parseQueries($("#mine-queries").value), options, return_text: true };
      out.replaceChildren(report(await api("POST", `/v1/indexes/${encodeURIComponent($("#mine-index").value)}/mine`, body)));
    } catch (err) {
      if (err instanceof Unauthorized) return askForKey();
      out.replaceChildren(el("p", { class: "error-box" }, String(err.message || err)));
    }
  } },
    el("label", {}, "Index ", el("select", { id: "mine-index" }, ready.map((i) => el("option", { value: i.name }, i.name)))),
    el("label", { for: "mine-queries" }, "Queries, one a line: query | positive id, positive id (the ids are optional: documents of the index known to be positives)"),
    el("textarea", { id: "mine-queries", rows: 6, placeholder: "how do I sort a list" }),
    el("label", { for: "mine-options" }, 'Options (JSON; {} is the recommended filter, {"filter": "none"} is sentence-transformers\')'),
    el("textarea", { id: "mine-options", rows: 2 }, "{}"),
    el("button", { type: "submit", id: "mine-run" }, "Mine"));
  show(el("h2", {}, "Mine hard negatives from an index"),
    ready.length ? form : el("p", { class: "empty" }, "No index with a version yet."), out);
}

// -- key and navigation ---------------------------------------------------------------------------------------
function askForKey() {
  view += 1;
  show();
  $("#key-form").hidden = false;
  $("#key-input").focus();
}

function route() {
  const mine = ++view;
  const [name, arg] = location.hash.slice(1).split("/");
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.getAttribute("href") === `#${name || "jobs"}`));
  $("#forget-key").hidden = !sessionStorage.getItem(KEY);
  const views = { jobs: () => jobsView(mine), job: () => jobView(mine, decodeURIComponent(arg || "")), indexes: () => indexesView(mine), mine: () => mineView(mine) };
  (views[name] || views.jobs)().catch(fail);
}

$("#key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, $("#key-input").value);
  $("#key-input").value = "";
  $("#key-form").hidden = true;
  route();
});
$("#forget-key").addEventListener("click", () => { sessionStorage.removeItem(KEY); askForKey(); });
window.addEventListener("hashchange", route);
route();
