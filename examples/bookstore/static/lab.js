// The lab page: save with one pattern and draw the response's Server-Timing as a waterfall;
// follow a background task; run the comparison and fill its table. Text goes into the page
// through textContent only.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

const WHERE = {
  caller: "caller",
  in_transaction: "in the transaction",
  on_commit: "on commit",
  background: "background",
  connection: "connection",
  mixed: "several",
  "": "",
};

// `pre_save;dur=1.2, recv_x;dur=1.0;desc="app::x"` -> [{name, dur, desc}]
function parseServerTiming(header) {
  const entries = [];
  for (const part of (header || "").split(/,(?=(?:[^"]*"[^"]*")*[^"]*$)/)) {
    const fields = part.trim().split(";");
    if (!fields[0]) continue;
    const entry = { name: fields[0].trim(), dur: 0, desc: "" };
    for (const f of fields.slice(1)) {
      const [k, ...rest] = f.split("=");
      const v = rest.join("=").trim();
      if (k.trim() === "dur") entry.dur = parseFloat(v) || 0;
      if (k.trim() === "desc") entry.desc = v.replace(/^"|"$/g, "").replace(/\\(.)/g, "$1");
    }
    entries.push(entry);
  }
  return entries;
}

// The header entry a receiver's time is summed into (as the Server-Timing layer does).
function metricOf(step) {
  if (step.phase === "on_commit") return "on_commit";
  if (step.phase === "background") return "background";
  return step.signal;
}

// Waterfall rows from the header's entries, placed by the save's own steps.
function waterfallRows(entries, steps) {
  const rows = [];
  let total = null;
  for (const e of entries) {
    if (e.name === "total") {
      total = { label: "total", where: "", start: 0, dur: e.dur, cls: "row-total" };
    } else if (e.name === "db") {
      const db = steps.find((s) => s.kind === "db");
      rows.push({ label: `db (${e.desc})`, where: "connection", start: db ? db.start_ms : 0, dur: e.dur, cls: "row-db", order: 2 });
    } else if (e.name.startsWith("recv_")) {
      const s = steps.find((s) => s.kind === "receiver" && s.full === e.desc);
      rows.push({
        label: s ? s.name : e.name.slice(5), title: e.desc, where: s ? s.ran : "",
        start: s ? s.start_ms : 0, dur: e.dur, cls: "recv", receiver: s ? s.name : "", order: 1,
      });
    } else {
      const mine = steps.filter((s) => s.kind === "receiver" && metricOf(s) === e.name);
      const wheres = [...new Set(mine.map((s) => s.ran))];
      rows.push({
        label: e.name, where: wheres.length === 1 ? wheres[0] : wheres.length ? "mixed" : "",
        start: mine.length ? Math.min(...mine.map((s) => s.start_ms)) : 0, dur: e.dur, cls: "row-phase", order: 0,
      });
    }
  }
  rows.sort((a, b) => a.start - b.start || a.order - b.order);
  if (total) rows.push(total);
  return rows;
}

let lastSave = null; // {rows, task}

function drawWaterfall() {
  const box = $("waterfall");
  for (const r of [...box.querySelectorAll(".row")]) r.remove();
  if (!lastSave) return;
  const rows = lastSave.rows.concat(lastSave.task ? [lastSave.task] : []);
  const span = Math.max(0.001, ...rows.map((r) => r.start + r.dur));
  for (const r of rows) {
    const row = el("div", { class: `row ${r.cls}`, "data-where": r.where });
    if (r.receiver) row.setAttribute("data-receiver", r.receiver);
    const label = el("div", { class: "label" }, r.label);
    if (r.title) label.title = r.title;
    const where = el("div", {});
    if (r.where) where.append(el("span", { class: "where", "data-where": r.where }, WHERE[r.where] || r.where));
    const track = el("div", { class: "track" });
    const bar = el("div", { class: "bar" });
    bar.style.left = `${(100 * r.start) / span}%`;
    bar.style.width = `${(100 * r.dur) / span}%`;
    bar.title = `${r.label}: starts at ${r.start.toFixed(3)} ms, lasts ${r.dur.toFixed(3)} ms`;
    track.append(bar);
    row.append(label, where, track, el("div", { class: "num" }, r.dur.toFixed(3)));
    box.append(row);
  }
}

function ms(v) {
  return v >= 100 ? `${v.toFixed(0)} ms` : v >= 1 ? `${v.toFixed(1)} ms` : `${v.toFixed(3)} ms`;
}

async function save(event) {
  event.preventDefault();
  const button = $("save");
  button.disabled = true;
  $("save-status").textContent = "Saving…";
  const body = { pattern: $("pattern").value, heavy_ms: Number($("heavy-ms").value), work: $("work").value };
  try {
    const began = performance.now();
    const response = await fetch("/lab/save", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const seen = performance.now() - began;
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    const header = response.headers.get("server-timing") || "";
    $("server-timing").textContent = header || "(no Server-Timing header)";
    $("response-time").textContent = ms(seen);
    $("response-detail").textContent = `in the browser; ${ms(data.response_ms)} in the handler`;
    lastSave = { rows: waterfallRows(parseServerTiming(header), data.steps), task: null, steps: data.steps };
    drawWaterfall();
    $("save-status").textContent = `Saved lab book ${data.book.id} with ${data.pattern}.`;
    $("waterfall").setAttribute("data-saved", String(data.book.id));
    if (data.background) followTask(data.book.id, data.steps);
    else $("task-progress").replaceChildren(el("li", {}, "This pattern queues no task: its work ran before the response."));
  } catch (e) {
    $("save-status").textContent = `Not saved: ${e.message}`;
    $("save-status").className = "error";
  } finally {
    button.disabled = false;
  }
}

function steps(items) {
  $("task-progress").replaceChildren(...items.map(([cls, text]) => el("li", { class: cls }, text)));
}

async function followTask(id, saveSteps) {
  const commit = saveSteps.find((s) => s.name === "lab_committed");
  const committedAt = commit ? commit.start_ms : 0;
  const until = performance.now() + 60000;
  steps([["done", "task row written in the save's transaction"], ["now", "committed; waiting for a worker"]]);
  while (performance.now() < until) {
    const response = await fetch(`/lab/saves/${id}`);
    if (response.ok) {
      const p = await response.json();
      const list = [["done", "task row written in the save's transaction"], ["done", "committed: the response went out"]];
      if (p.state === "waiting") {
        list.push(["now", `waiting in queue "lab" (${p.lab_queue_pending} pending there)`]);
      } else {
        list.push(["done", `picked up by a worker ${ms(p.started_after_commit_ms)} after the commit (task ${p.task_id}, attempt ${p.attempt})`]);
        if (p.state === "running") list.push(["now", "running the heavy work…"]);
        else list.push(["done", `done ${ms(p.finished_after_commit_ms)} after the commit (queue: ${p.queue_state || "?"})`]);
      }
      steps(list);
      $("task-progress").setAttribute("data-state", p.state);
      if (p.state === "done" && lastSave && $("waterfall").getAttribute("data-saved") === String(id)) {
        lastSave.task = {
          label: "lab_heavy_post_save_background (the task)", where: "background", cls: "recv task",
          receiver: "lab_heavy_post_save_background:task",
          start: committedAt + p.started_after_commit_ms, dur: p.finished_after_commit_ms - p.started_after_commit_ms,
        };
        drawWaterfall();
        return;
      }
      if (p.state === "done") return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  steps([["now", "still not run after 60 s: is a worker running (bookstore serve starts one unless --no-worker)?"]]);
}

function verdictClass(v) {
  if (v.startsWith("[X]")) return "verdict verdict-bad";
  if (v.startsWith("[!]")) return "verdict verdict-risky";
  if (v.startsWith("[OK]")) return "verdict verdict-good";
  return "verdict";
}

function showRun(state) {
  if (!state.id) return;
  $("run-progress").max = Math.max(1, state.steps);
  $("run-progress").value = state.done;
  const settings = state.settings || {};
  let status = `Run ${state.id}: ${state.doing}, ${state.elapsed_s.toFixed(1)} s; ${settings.books} books × ${settings.clients} clients per pattern, ${settings.heavy_ms} ms ${settings.work}.`;
  if (state.stopped) status += ` ${state.stopped}`;
  $("run-status").textContent = status;
  $("run-status").className = state.stopped && !state.running ? "error" : "muted";
  const table = $("comparison");
  table.setAttribute("data-run", String(state.id));
  table.setAttribute("data-running", String(state.running));
  for (const tr of table.querySelectorAll("tr.pattern")) {
    const row = state.rows.find((r) => r.pattern === tr.dataset.pattern);
    tr.querySelector(".saves-per-s").textContent = row ? row.saves_per_s.toFixed(0) : "—";
    tr.querySelector(".p50").textContent = row ? ms(row.p50_ms) : "—";
    tr.querySelector(".p99").textContent = row ? ms(row.p99_ms) : "—";
    tr.querySelector(".work").textContent = row ? `${row.work_completed}/${row.saves}` : "—";
    const verdict = tr.querySelector(".verdict");
    verdict.textContent = row ? row.verdict : "—";
    verdict.className = row ? verdictClass(row.verdict) : "verdict";
  }
  $("run").disabled = state.running;
}

async function pollRun() {
  while (true) {
    const response = await fetch("/lab/run");
    if (!response.ok) return;
    const state = await response.json();
    showRun(state);
    if (!state.running) return;
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function startRun(event) {
  event.preventDefault();
  const body = {
    books: Number($("run-books").value),
    clients: Number($("run-clients").value),
    heavy_ms: Number($("run-heavy-ms").value),
    work: $("run-work").value,
  };
  const response = await fetch("/lab/run", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) {
    $("run-status").textContent = `Refused: ${data.error}`;
    $("run-status").className = "error";
    return;
  }
  showRun(data);
  pollRun();
}

$("save-form").addEventListener("submit", save);
$("run-form").addEventListener("submit", startRun);
pollRun();
