// Herald dashboard: refreshes the server-rendered page from the JSON endpoints and sends the
// actions (retry, cancel, purge) with the token typed into the page (kept in this tab's
// sessionStorage).
// The markup mirrors render.rs: keep the class names and the charts' geometry in step.
'use strict';
(() => {
  const body = document.body;
  const base = body.dataset.base || '';
  const refresh = Math.max(100, Number(body.dataset.refresh) || 2000);
  const $ = (id) => document.getElementById(id);
  const tokenInput = $('token');
  const status = $('status');
  const KEY = 'herald-token';

  tokenInput.value = sessionStorage.getItem(KEY) || '';
  tokenInput.addEventListener('input', () => {
    const token = tokenInput.value.trim();
    if (token) sessionStorage.setItem(KEY, token);
    else sessionStorage.removeItem(KEY);
  });

  const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ESC[c]);
  const three = (x) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
  const dur = (us) =>
    us <= 0 ? '0'
      : us < 1 ? `${(us * 1e3).toFixed(0)} ns`
        : us < 1e3 ? `${three(us)} µs`
          : us < 1e6 ? `${three(us / 1e3)} ms`
            : `${three(us / 1e6)} s`;
  const age = (nowMs, us) => {
    const s = Math.floor(Math.max(0, nowMs - Math.trunc(us / 1000)) / 1000);
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  };
  const say = (text, kind) => {
    status.textContent = text;
    status.className = `status ${kind}`;
  };

  // Latency histogram: BAR_W, BAR_GAP, BAR_H, LABEL_H as in render.rs.
  const [BAR_W, BAR_GAP, BAR_H, LABEL_H] = [5, 1, 28, 9];
  function histogram(r, bounds, slowUs) {
    const n = r.histogram.length;
    const w = n * (BAR_W + BAR_GAP);
    const h = BAR_H + LABEL_H;
    const max = Math.max(1, ...r.histogram);
    let svg = `<svg class="hist" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" aria-label="latency histogram of ${esc(r.name)}">`;
    svg += `<line class="axis" x1="0" y1="${BAR_H}.5" x2="${w}" y2="${BAR_H}.5"/>`;
    r.histogram.forEach((count, i) => {
      const low = i === 0 ? 0 : bounds[i - 1];
      const high = bounds[i];
      const label = high === undefined ? `over ${dur(low)}` : i === 0 ? `under ${dur(high)}` : `${dur(low)} to ${dur(high)}`;
      const bh = count === 0 ? 0 : Math.max(1, Math.round((count / max) * BAR_H));
      const cls = low >= slowUs ? 'bar over' : 'bar';
      svg += `<rect class="${cls}" x="${i * (BAR_W + BAR_GAP)}" y="${BAR_H - bh}" width="${BAR_W}" height="${bh}"><title>${esc(label)}: ${count}</title></rect>`;
    });
    for (const [i, text] of [[0, '1µs'], [10, '1ms'], [20, '1s']]) {
      if (i < n) svg += `<text class="tick" x="${i * (BAR_W + BAR_GAP)}" y="${h - 1}">${text}</text>`;
    }
    return `${svg}</svg>`;
  }

  function renderReceivers(view) {
    $('meta').firstChild.textContent =
      `${view.receivers.length} receivers · slow threshold ${dur(view.slow_threshold_us)} · timing ${view.timing} · `;
    const rows = view.receivers.map((r) => {
      const slow = r.slow
        ? ` <span class="badge slow-badge" title="p99 at or above the slow threshold (${esc(dur(view.slow_threshold_us))})">SLOW</span>`
        : '';
      return `<tr class="receiver${r.slow ? ' slow' : ''}" data-id="${r.id}">`
        + `<td class="name"><span class="short">${esc(r.short_name)}</span>${slow}<div class="full">${esc(r.name)}</div></td>`
        + `<td>${esc(r.signal)}</td><td>${esc(r.sender)}</td><td>${esc(r.phase)}${r.condition ? `<div class="cond">${esc(r.condition)}</div>` : ''}</td><td class="loc">${esc(r.location)}</td>`
        + `<td class="num">${r.calls}</td><td class="num${r.errors > 0 ? ' bad' : ''}">${r.errors}</td>`
        + `<td class="num">${dur(r.p50_us)}</td><td class="num">${dur(r.p99_us)}</td><td class="num">${dur(r.max_us)}</td>`
        + `<td class="chart">${histogram(r, view.bounds_us, view.slow_threshold_us)}</td></tr>`;
    });
    $('receivers').tBodies[0].innerHTML = rows.length
      ? rows.join('')
      : '<tr class="empty"><td colspan="11">No receivers are connected.</td></tr>';
  }

  // Queue chart: CHART_W, CHART_H, PAD as in render.rs.
  const [CHART_W, CHART_H, PAD] = [560, 150, 28];
  function queueChart(states, history) {
    let svg = `<svg id="queue-svg" class="queue-chart" width="${CHART_W}" height="${CHART_H}" viewBox="0 0 ${CHART_W} ${CHART_H}" role="img" aria-label="task counts over time">`;
    const max = Math.max(1, ...history.flatMap((s) => Object.values(s.counts)));
    const [left, right, top, bottom] = [PAD, CHART_W - 8, 8, CHART_H - 18];
    svg += `<line class="axis" x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}"/>`
      + `<line class="axis" x1="${left}" y1="${top}" x2="${left}" y2="${bottom}"/>`
      + `<text class="tick" x="2" y="${top + 8}">${max}</text><text class="tick" x="2" y="${bottom}">0</text>`;
    if (history.length === 0) svg += `<text class="tick" x="${left + 10}" y="${CHART_H / 2}">no samples yet</text>`;
    const span = Math.max(1, history.length - 1);
    for (const state of states) {
      const points = history.map((s, i) => {
        const v = s.counts[state] || 0;
        const x = left + ((right - left) * i) / span;
        const y = bottom - ((bottom - top) * v) / max;
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      });
      if (points.length) svg += `<polyline class="line state-${esc(state)}" points="${points.join(' ')}"><title>${esc(state)}</title></polyline>`;
    }
    if (history.length) {
      const ms = history[history.length - 1].at_ms - history[0].at_ms;
      const span = ms < 10000 ? `${(ms / 1000).toFixed(1)} s` : ms < 600000 ? `${Math.floor(ms / 1000)} s` : `${Math.floor(ms / 60000)} min`;
      svg += `<text class="tick" x="${left}" y="${CHART_H - 4}">${span} ago</text>`
        + `<text class="tick end" x="${right}" y="${CHART_H - 4}">now</text>`;
    }
    return `${svg}</svg>`;
  }

  function renderTasks(view) {
    const counts = $('queue-counts');
    if (!counts) return; // the page was rendered while the queue could not be read: reload shows it
    const rows = view.queues.map((q) => `<tr><td>${esc(q.queue)}</td>${view.states.map((s) => {
      const n = q.counts[s] || 0;
      return `<td class="${s === 'dead' && n > 0 ? 'num bad' : 'num'}">${n}</td>`;
    }).join('')}</tr>`);
    counts.tBodies[0].innerHTML = rows.length
      ? rows.join('')
      : `<tr class="empty"><td colspan="${view.states.length + 1}">The queue is empty.</td></tr>`;
    $('queue-chart').innerHTML = queueChart(view.states, view.history);
    const kinds = view.kinds.map((k) => `<tr><td>${esc(k.kind)}</td><td class="num">${k.runs}</td>`
      + `<td class="num${k.failures > 0 ? ' bad' : ''}">${k.failures}</td><td class="num">${k.retries}</td>`
      + `<td class="num">${dur(k.queue_wait.p50_us)}</td><td class="num">${dur(k.queue_wait.p99_us)}</td>`
      + `<td class="num">${dur(k.run_time.p50_us)}</td><td class="num">${dur(k.run_time.p99_us)}</td>`
      + `<td class="num">${dur(k.run_time.max_us)}</td></tr>`);
    $('kinds').tBodies[0].innerHTML = kinds.length
      ? kinds.join('')
      : '<tr class="empty"><td colspan="9">No task has run in this process yet.</td></tr>';
  }

  function renderDead(view) {
    const table = $('dead');
    if (!table) return;
    const now = Date.now();
    const rows = view.tasks.map((t) => {
      const error = t.last_error || '';
      return `<tr class="dead-task" data-id="${t.id}"><td class="num">${t.id}</td><td>${esc(t.kind)}</td><td>${esc(t.queue)}</td>`
        + `<td class="num">${t.attempt}/${t.max_attempts}</td><td class="error" title="${esc(error)}">${esc(error)}</td>`
        + `<td>${age(now, t.created_at_us)}</td>`
        + `<td><button type="button" class="retry" data-task="${t.id}">Retry</button></td></tr>`;
    });
    table.tBodies[0].innerHTML = rows.length
      ? rows.join('')
      : '<tr class="empty"><td colspan="7">No dead tasks.</td></tr>';
  }

  async function getJson(path) {
    const response = await fetch(base + path, { headers: { Accept: 'application/json' }, cache: 'no-store' });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(`${response.status}: ${answer.error || response.statusText}`);
    return answer;
  }

  let refreshing = null;
  async function refreshAll() {
    if (refreshing) return refreshing;
    refreshing = (async () => {
      try {
        const [receivers, tasks, dead] = await Promise.all([
          getJson('/api/receivers'), getJson('/api/tasks'), getJson('/api/tasks/dead'),
        ]);
        renderReceivers(receivers);
        renderTasks(tasks);
        renderDead(dead);
        $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
      } catch (error) {
        $('updated').textContent = `refresh failed: ${error.message}`;
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  async function act(button, path, done) {
    const headers = {};
    const token = tokenInput.value.trim();
    if (token) headers['X-Herald-Token'] = token;
    button.disabled = true;
    try {
      const response = await fetch(base + path, { method: 'POST', headers, cache: 'no-store' });
      const answer = await response.json().catch(() => ({}));
      if (response.ok) say(done(answer), 'ok');
      else say(`Refused (${response.status}): ${answer.error || response.statusText}`, 'error');
    } catch (error) {
      say(`Request failed: ${error.message}`, 'error');
    } finally {
      button.disabled = false;
    }
    await refreshAll();
  }

  document.addEventListener('click', (event) => {
    const retry = event.target.closest('button.retry');
    if (retry) {
      const id = retry.dataset.task;
      act(retry, `/api/tasks/${encodeURIComponent(id)}/retry`, () => `Task ${id} is queued again.`);
      return;
    }
    const cancel = event.target.closest('button.cancel-kind');
    if (cancel) {
      // Cancelling can be undone (retry takes cancelled tasks): no confirmation.
      const kind = $('cancel-kind').value.trim();
      if (!kind) {
        say('Type the kind of the pending tasks to cancel.', 'error');
        return;
      }
      act(cancel, `/api/tasks/cancel?kind=${encodeURIComponent(kind)}`, (a) => `Cancelled ${a.cancelled} pending ${kind} tasks.`);
      return;
    }
    const purge = event.target.closest('button.purge');
    if (purge) {
      const state = purge.dataset.state;
      if (!window.confirm(`Delete every ${state} task?`)) return;
      act(purge, `/api/tasks/purge?state=${encodeURIComponent(state)}`, (a) => `Purged ${a.purged} ${state} tasks.`);
    }
  });

  const tick = async () => {
    if (!document.hidden) await refreshAll();
    setTimeout(tick, refresh);
  };
  setTimeout(tick, refresh);
})();
