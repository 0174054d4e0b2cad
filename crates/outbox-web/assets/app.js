/* outbox dashboard: a small single-page app over the JSON API described in API.md.
   Every piece of server text reaches the page through textContent or setAttribute (see h()),
   never through innerHTML: event ids, keys and errors are untrusted. */
'use strict';

const REFRESH_CHOICES = ['0', '2', '5', '10', '30'];
const FILTER_FIELDS = ['status', 'routingKey', 'aggregateId', 'id', 'since', 'from', 'to', 'error'];

/** The filters as the API takes them: `from`/`to` are local times in the URL, UTC for the API. */
function apiFilters(filters) {
  const out = { ...filters };
  for (const k of ['from', 'to']) {
    if (!out[k]) continue;
    const t = new Date(out[k]);
    if (Number.isNaN(t.getTime())) delete out[k];
    else out[k] = t.toISOString();
  }
  return out;
}
const STATUSES = ['PENDING', 'PROCESSING', 'SENT', 'FAILED'];
const SINCE_CHOICES = [['', 'any'], ['900', '15 min'], ['3600', '1 h'], ['86400', '24 h'], ['604800', '7 d']];
const APPROX_TITLE = 'An estimate from the database statistics (the table is large); the other counts are exact.';
const NO_HISTORY = 'No history yet: this process keeps the last hour in memory, starting when it started.';

const state = {
  token: sessionStorage.getItem('outbox.token') || '',
  meta: null,            // {store, actions, worker} from the last /api/overview
  view: null,            // the mounted view: {refresh()}
  gen: 0,                // bumped on every route change: answers for an older view are dropped
  timer: 0,
  needToken: false,
  confirmResolve: null,  // set while the confirmation dialog is open
  selected: new Set(),   // ids picked on the events page
  selectionScope: null,  // the filter those ids were picked under
  history: null,
  chartKey: localStorage.getItem('outbox.chartKey') || '',
};

/* ---------- small helpers ---------- */

const $ = (sel, root = document) => root.querySelector(sel);

/** Builds an element; props set attributes (or text / on<event>), children are nodes or text. */
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  for (const c of children.flat(Infinity)) {
    if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** The same for SVG elements. */
function svg(tag, props, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  setProps(el, props);
  for (const c of children) if (c != null) el.append(c instanceof Node ? c : String(c));
  return el;
}

function setProps(el, props) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

/** Re-renders only when the data differs from what the container shows (keeps focus and selection). */
function renderIfChanged(container, data, render) {
  const sig = JSON.stringify(data);
  if (container.dataset.sig === sig) return;
  container.dataset.sig = sig;
  render();
}

const fmtNum = (n, digits = 0) =>
  n == null ? '—' : Number(n).toLocaleString('en-US', { maximumFractionDigits: digits });

const plural = (n, word) => `${fmtNum(n)} ${word}${n === 1 ? '' : 's'}`;

/** 12s, 3m 4s, 2h 1m, 3d 4h; — for none. */
function fmtLag(seconds) {
  if (seconds == null) return '—';
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

const pad = (n) => String(n).padStart(2, '0');

/** Local time, YYYY-MM-DD HH:MM:SS. */
function fmtTime(iso) {
  if (iso == null || iso === '') return '—';
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "3 min ago" or "in 2 min". */
function fmtAgo(iso) {
  const t = Date.parse(iso);
  if (isNaN(t)) return '';
  const s = Math.round((Date.now() - t) / 1000);
  const a = Math.abs(s);
  const text = a < 60 ? `${a} s` : a < 3600 ? `${Math.floor(a / 60)} min`
    : a < 86400 ? `${Math.floor(a / 3600)} h` : `${Math.floor(a / 86400)} d`;
  return s >= 0 ? `${text} ago` : `in ${text}`;
}

/** Latency in seconds as "4 ms" or "1.25 s". */
const fmtLatency = (v) => v == null ? '—' : v < 1 ? `${fmtNum(v * 1000, 1)} ms` : `${fmtNum(v, 2)} s`;

const eventsHref = (filters) => '#/events?' + new URLSearchParams(filters);
const eventHref = (id) => '#/event/' + encodeURIComponent(id);

function statusBadge(status, retryCount) {
  const retrying = status === 'PENDING' && retryCount > 0;
  return h('span', {
    class: `badge s-${retrying ? 'retrying' : String(status).toLowerCase()}`,
    title: retrying ? `retry ${retryCount}` : null,
  }, status);
}

/* ---------- raw JSON: the payload is shown as the server wrote it ---------- */

function skipWs(s, i) {
  while (i < s.length && ' \t\n\r'.includes(s[i])) i++;
  return i;
}

/** s[i] is a quote; returns the index after the closing quote. */
function skipString(s, i) {
  for (i++; i < s.length; i++) {
    if (s[i] === '\\') i++;
    else if (s[i] === '"') return i + 1;
  }
  throw new Error('unterminated string');
}

/** Returns the index after the JSON value that starts at (or after whitespace at) i. */
function skipValue(s, i) {
  i = skipWs(s, i);
  if (s[i] === '"') return skipString(s, i);
  if (s[i] === '{' || s[i] === '[') {
    for (let depth = 0; i < s.length;) {
      const c = s[i];
      if (c === '"') { i = skipString(s, i); continue; }
      if (c === '{' || c === '[') depth++;
      else if ((c === '}' || c === ']') && --depth === 0) return i + 1;
      i++;
    }
    throw new Error('unbalanced JSON');
  }
  while (i < s.length && !',}] \t\n\r'.includes(s[i])) i++;
  return i;
}

/** The members of a JSON object as raw text: {key: "the value's source text"}. */
function rawMembers(s) {
  const out = {};
  let i = skipWs(s, 0);
  if (s[i] !== '{') return out;
  for (i++; ;) {
    i = skipWs(s, i);
    if (s[i] !== '"') break;
    const keyEnd = skipString(s, i);
    const key = JSON.parse(s.slice(i, keyEnd));
    const start = skipWs(s, skipWs(s, keyEnd) + 1); // past the colon
    i = skipValue(s, start);
    out[key] = s.slice(start, i);
    i = skipWs(s, i);
    if (s[i] !== ',') break;
    i++;
  }
  return out;
}

/** Re-indents JSON text; strings, numbers and literals are copied verbatim, never re-encoded. */
function prettyJson(text, unit = '  ') {
  let out = '';
  let depth = 0;
  const newline = () => '\n' + unit.repeat(Math.max(depth, 0));
  for (let i = 0; i < text.length;) {
    const c = text[i];
    if (c === '"') {
      const end = skipString(text, i);
      out += text.slice(i, end);
      i = end;
      continue;
    }
    if (c === '{' || c === '[') {
      const next = skipWs(text, i + 1);
      if (text[next] === (c === '{' ? '}' : ']')) { // empty container stays on one line
        out += c + text[next];
        i = next + 1;
        continue;
      }
      depth++;
      out += c + newline();
    } else if (c === '}' || c === ']') {
      depth--;
      out += newline() + c;
    } else if (c === ',') {
      out += ',' + newline();
    } else if (c === ':') {
      out += ': ';
    } else if (!' \t\n\r'.includes(c)) {
      out += c; // part of a number or of true/false/null
    }
    i++;
  }
  return out;
}

/** The payload's display text; a payload stored as a JSON string holding JSON is unwrapped. */
function payloadText(raw) {
  if (raw == null) return 'null';
  let text = raw;
  if (raw.startsWith('"')) {
    text = JSON.parse(raw); // a string token: decoding it loses nothing
    const t = text.trim();
    if (!t.startsWith('{') && !t.startsWith('[')) return text;
  }
  try { return prettyJson(text.trim()); } catch { return text; }
}

/* ---------- requests ---------- */

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/** Fetches an /api path and returns the body text; POSTs when a body is given. */
async function request(path, body) {
  const method = body === undefined ? 'GET' : 'POST';
  const headers = {};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (method === 'POST') {
    headers['Content-Type'] = 'application/json';
    headers['X-Outbox-Action'] = '1';
  }
  let res;
  try {
    res = await fetch(path.replace(/^\//, ''), { // relative: works behind a path prefix too
      method, headers, cache: 'no-store',
      body: method === 'POST' ? JSON.stringify(body) : undefined,
    });
  } catch (e) {
    throw new ApiError(0, `${method} ${path}: ${e.message}`);
  }
  const text = await res.text();
  if (res.status === 401) {
    askForToken(state.token ? 'The token was refused.' : 'This dashboard needs a token.');
    throw new ApiError(401, 'unauthorized');
  }
  if (!res.ok) {
    let msg = text;
    try { msg = JSON.parse(text).error || text; } catch { /* not JSON */ }
    throw new ApiError(res.status, `${method} ${path.split('?')[0]}: ${res.status} ${msg}`);
  }
  $('#updated').textContent = `updated ${fmtTime(new Date())}`;
  return text;
}

const getJson = async (path) => JSON.parse(await request(path));
const postAction = async (name, body) => JSON.parse(await request(`/api/actions/${name}`, body));

/** Fetches /api/overview once for the header and the actions flag. */
async function ensureMeta() {
  if (!state.meta) applyMeta(await getJson('/api/overview'));
  return state.meta;
}

function applyMeta(ov) {
  state.meta = { store: ov.store, actions: !!ov.actions, worker: !!ov.worker };
  $('#store').textContent = ov.store || '';
}

/* ---------- banners, token form, confirmation ---------- */

function showError(e) {
  if (e && e.status === 401) return; // the token form says it
  $('#error-text').textContent = e && e.message ? e.message : String(e);
  $('#error').hidden = false;
}

const hideError = () => { $('#error').hidden = true; };

function showNotice(text) {
  const el = $('#notice');
  el.textContent = text;
  el.hidden = false;
  clearTimeout(showNotice.timer);
  showNotice.timer = setTimeout(() => { el.hidden = true; }, 8000);
}

function askForToken(message) {
  if (state.token) {
    sessionStorage.removeItem('outbox.token');
    state.token = '';
  }
  const form = $('#token-form');
  $('#token-msg').textContent = message;
  if (form.hidden) {
    form.hidden = false;
    $('#token').focus();
  }
  state.needToken = true;
}

function saveToken(token) {
  state.token = token;
  if (token) sessionStorage.setItem('outbox.token', token);
  else sessionStorage.removeItem('outbox.token');
}

/** A token given as #token=… or ?token=… goes to sessionStorage and leaves the address bar. */
function takeTokenFromUrl() {
  const search = new URLSearchParams(location.search);
  let token = search.get('token');
  search.delete('token');
  let hash = location.hash;
  const m = /^#token=([^&]*)/.exec(hash);
  if (m) {
    token = decodeURIComponent(m[1]);
    hash = '';
  }
  if (token == null) return;
  saveToken(token);
  const qs = search.toString();
  history.replaceState(null, '', location.pathname + (qs ? `?${qs}` : '') + hash);
}

/** Opens the confirmation dialog; resolves true on OK, false on Cancel / Escape / backdrop. */
function confirmAction(text, okLabel) {
  closeConfirm(false);
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = okLabel;
  $('#confirm-ok').className = okLabel === 'Delete' ? 'danger-solid' : 'primary';
  $('#confirm').hidden = false;
  $('#confirm-ok').focus();
  return new Promise((resolve) => { state.confirmResolve = resolve; });
}

function closeConfirm(ok) {
  const resolve = state.confirmResolve;
  if (!resolve) return;
  state.confirmResolve = null;
  $('#confirm').hidden = true;
  resolve(ok);
}

/** Confirms, POSTs the action, reports the result and refreshes the view. */
async function runAction({ text, ok, action, body, done }) {
  if (!(await confirmAction(text, ok))) return false;
  try {
    const res = await postAction(action, body);
    showNotice(done(res) + (res.more ? ' (more match: run it again for the rest)' : ''));
  } catch (e) {
    showError(e);
    return false;
  }
  await refreshView();
  return true;
}

/* ---------- routing and refresh ---------- */

function parseHash() {
  const raw = location.hash.replace(/^#/, '');
  const q = raw.indexOf('?');
  return {
    path: (q < 0 ? raw : raw.slice(0, q)) || '/',
    query: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)),
  };
}

/** Goes to a hash route; routes even when the hash is unchanged (a re-submitted filter). */
function navigate(hash) {
  history.pushState(null, '', hash);
  route();
}

function route() {
  closeConfirm(false);
  state.gen++;
  const { path, query } = parseHash();
  let name = 'overview';
  if (path.startsWith('/event/')) {
    name = 'event';
    let id = path.slice('/event/'.length);
    try { id = decodeURIComponent(id); } catch { /* keep it as written */ }
    state.view = eventView(id);
  } else if (path === '/events') {
    name = 'events';
    state.view = eventsView(query);
  } else {
    state.view = overviewView();
  }
  for (const a of document.querySelectorAll('[data-nav]')) {
    a.classList.toggle('active', a.dataset.nav === (name === 'event' ? 'events' : name));
  }
  refreshView();
}

/** Loads the current view's data; the error banner shows the last failure, if any. */
async function refreshView() {
  const gen = state.gen;
  clearTimeout(state.timer);
  try {
    await state.view.refresh(() => gen !== state.gen);
    if (gen === state.gen) hideError();
  } catch (e) {
    if (gen === state.gen) showError(e);
  }
  scheduleRefresh();
}

function scheduleRefresh() {
  clearTimeout(state.timer);
  const seconds = Number($('#refresh').value);
  if (!seconds || document.hidden) return;
  state.timer = setTimeout(() => {
    // no refresh under an open dialog (it would change what is being confirmed) or without a token
    if (state.confirmResolve || state.needToken) scheduleRefresh();
    else refreshView();
  }, seconds * 1000);
}

/* ---------- overview ---------- */

function overviewView() {
  const table = (id, heads) => h('table', { id, class: 'grid' },
    h('thead', {}, h('tr', {}, heads.map(([label, cls]) => h('th', { class: cls }, label)))),
    h('tbody'));
  const keyHeads = [['Routing key'], ['Sink'], ['Pending', 'num'], ['Processing', 'num'],
    ['Retrying', 'num'], ['Sent', 'num'], ['Failed', 'num'], ['Lag', 'num'], ['Breaker'], [''], ['']];
  const chartKey = h('select', { id: 'chart-key', onchange: () => {
    state.chartKey = chartKey.value;
    localStorage.setItem('outbox.chartKey', chartKey.value);
    renderCharts();
  } }, h('option', { value: '' }, 'all keys'));

  $('#view').replaceChildren(
    h('section', { id: 'tiles', class: 'tiles' }),
    h('section', {}, h('h2', {}, 'Routing keys'), table('keys', keyHeads)),
    h('div', { class: 'columns' },
      h('section', {}, h('h2', {}, 'Blocked aggregates'),
        table('blocked', [['Aggregate'], ['Routing key'], ['Blocking event'], ['']])),
      h('section', {}, h('h2', {}, 'Workers'),
        table('workers', [['Owner'], ['Events held', 'num'], ['Lease until']])),
      h('section', {}, h('h2', {}, 'Sinks'), table('sinks', [['Sink'], ['Breaker']]))),
    h('section', { class: 'charts-section' },
      h('h2', {}, 'Last hour ', chartKey),
      h('div', { id: 'charts', class: 'charts' })));

  return {
    async refresh(stale) {
      const [ov, hist] = await Promise.allSettled([getJson('/api/overview'), getJson('/api/history')]);
      if (stale()) return;
      if (ov.status === 'fulfilled') renderOverview(ov.value);
      if (hist.status === 'fulfilled') {
        state.history = hist.value;
        renderCharts();
      }
      for (const r of [ov, hist]) if (r.status === 'rejected') throw r.reason;
    },
  };
}

function renderOverview(ov) {
  applyMeta(ov);
  const tiles = $('#tiles');
  renderIfChanged(tiles, [ov.totals, ov.approximate], () => {
    tiles.replaceChildren(...['pending', 'processing', 'retrying', 'sent', 'failed'].map((name) => {
      const approx = name === 'sent' && ov.approximate;
      return h('div', { class: `tile t-${name}`, title: approx ? APPROX_TITLE : null },
        h('div', { class: 'tile-label' }, name),
        h('div', { class: 'tile-value' }, (approx ? '≈' : '') + fmtNum((ov.totals || {})[name])));
    }));
  });
  fillTable('keys', [ov.keys, ov.actions, ov.approximate], ov.keys || [], 'No routing keys yet.',
    (k) => keyRow(k, ov));
  fillTable('blocked', [ov.blocked, ov.actions], ov.blocked || [], 'No blocked aggregates.', (b) =>
    h('tr', { 'data-aggregate': b.aggregateId },
      h('td', {}, b.aggregateId),
      h('td', {}, b.routingKey),
      h('td', {}, h('a', { href: eventHref(b.eventId) }, b.eventId)),
      h('td', { class: 'act' }, ov.actions && h('button', {
        'data-action': 'unblock', 'data-aggregate': b.aggregateId, 'data-event': b.eventId,
      }, 'Unblock'))));
  fillTable('workers', [ov.workers], ov.workers || [], 'No worker holds events.', (w) =>
    h('tr', {},
      h('td', {}, w.owner),
      h('td', { class: 'num' }, fmtNum(w.events)),
      h('td', { title: fmtAgo(w.leaseUntil) }, fmtTime(w.leaseUntil))));
  fillTable('sinks', [ov.sinks, ov.worker], ov.sinks || [],
    ov.worker ? 'No sinks.' : 'No worker runs in this process.', (s) =>
      h('tr', {}, h('td', {}, s.name), h('td', {}, breakerBadge(s.breaker))));
}

/** Replaces a table's body when its data changed; an empty list gets one explanatory row. */
function fillTable(id, sigData, items, emptyText, rowOf) {
  const body = $(`#${id} tbody`);
  renderIfChanged(body, sigData, () => {
    const cols = $(`#${id} thead tr`).children.length;
    body.replaceChildren(...(items.length ? items.map(rowOf)
      : [h('tr', { class: 'empty' }, h('td', { colspan: cols }, emptyText))]));
  });
}

function breakerBadge(breaker) {
  return breaker ? h('span', { class: `breaker b-${breaker}` }, breaker) : '—';
}

function keyRow(k, ov) {
  const cell = (col, content, cls) => h('td', { 'data-col': col, class: cls }, content);
  // On a large table SENT rows are estimated, not counted (per key where the database's
  // planner gives an estimate).
  const sent = !ov.approximate ? fmtNum(k.sent)
    : k.sent == null
      ? h('span', { title: 'Not counted on a table this large; the SENT tile shows the estimate for all keys.' }, '—')
      : h('span', { title: APPROX_TITLE }, '≈' + fmtNum(k.sent));
  const failed = k.failed > 0
    ? h('a', { href: eventsHref({ status: 'FAILED', routingKey: k.routingKey }), class: 'failed-link' },
      fmtNum(k.failed))
    : fmtNum(k.failed);
  const action = ov.actions && k.policy && h('button', {
    'data-action': k.paused ? 'resume' : 'pause', 'data-key': k.routingKey, 'data-pending': k.pending,
  }, k.paused ? 'Resume' : 'Pause');
  return h('tr', { 'data-key': k.routingKey, class: k.paused ? 'is-paused' : null },
    cell('routingKey', h('a', { href: eventsHref({ routingKey: k.routingKey }) }, k.routingKey), 'key'),
    cell('sink', k.sink == null ? '—' : k.sink),
    cell('pending', fmtNum(k.pending), 'num'),
    cell('processing', fmtNum(k.processing), 'num'),
    cell('retrying', fmtNum(k.retrying), k.retrying > 0 ? 'num warn' : 'num'),
    cell('sent', sent, 'num'),
    cell('failed', failed, k.failed > 0 ? 'num bad' : 'num'),
    cell('lag', fmtLag(k.oldestPendingSeconds), 'num'),
    cell('breaker', breakerBadge(k.breaker)),
    cell('paused', k.paused ? h('span', { class: 'badge s-paused' }, 'paused') : ''),
    cell('actions', action, 'act'));
}

/** Pause / resume / unblock buttons of the overview (one delegated listener). */
function onOverviewAction(button) {
  const { action, key, aggregate, event, pending } = button.dataset;
  const pendingText = plural(Number(pending) || 0, 'pending event');
  if (action === 'pause') {
    return runAction({
      text: `Pause routing key "${key}"? Its ${pendingText} stay PENDING and are not delivered until it is resumed.`,
      ok: 'Pause', action, body: { routingKey: key }, done: () => `${key} paused`,
    });
  }
  if (action === 'resume') {
    return runAction({
      text: `Resume routing key "${key}"? Its ${pendingText} are delivered again.`,
      ok: 'Resume', action, body: { routingKey: key }, done: () => `${key} resumed`,
    });
  }
  if (action === 'unblock') {
    return runAction({
      text: `Unblock aggregate "${aggregate}"? Its later events, held back behind the FAILED event "${event}", are delivered again; that event stays FAILED.`,
      ok: 'Unblock', action, body: { aggregates: [aggregate] },
      done: (res) => `${plural(res.done, 'aggregate')} unblocked`,
    });
  }
  return null;
}

/* ---------- charts ---------- */

/** The series of one key, or of all keys (sums; the maximum for latencies). */
function chartSeries(hist, key) {
  const keys = key ? [hist.keys[key]].filter(Boolean) : Object.values(hist.keys || {});
  const combine = (field, fold) => hist.times.map((_, i) => {
    const vals = keys.map((k) => (k[field] || [])[i]).filter((v) => v != null);
    return vals.length ? fold(vals) : null;
  });
  const sum = (v) => v.reduce((a, b) => a + b, 0);
  const max = (v) => Math.max(...v);
  return {
    backlog: combine('backlog', sum), delivered: combine('delivered', sum),
    failed: combine('failed', sum), p50: combine('p50', max), p95: combine('p95', max),
  };
}

function renderCharts() {
  const hist = state.history;
  const box = $('#charts');
  const select = $('#chart-key');
  if (!hist || !box) return;
  const names = Object.keys(hist.keys || {}).sort();
  renderIfChanged(select, names, () => {
    select.replaceChildren(h('option', { value: '' }, 'all keys'),
      ...names.map((n) => h('option', { value: n }, n)));
  });
  if (!names.includes(state.chartKey)) state.chartKey = '';
  select.value = state.chartKey;
  if (!hist.times || !hist.times.length) {
    box.replaceChildren(h('p', { class: 'muted' }, NO_HISTORY));
    return;
  }
  const s = chartSeries(hist, state.chartKey);
  const perSecond = (v) => v == null ? '—' : `${fmtNum(v, 2)}/s`;
  box.replaceChildren(
    lineChart('Backlog', hist.times, [{ values: s.backlog, cls: 'l-backlog' }], (v) => fmtNum(v)),
    lineChart('Delivered', hist.times, [{ values: s.delivered, cls: 'l-sent' }], perSecond),
    lineChart('Failed', hist.times, [{ values: s.failed, cls: 'l-failed' }], perSecond),
    lineChart('Latency', hist.times, [
      { name: 'p50', values: s.p50, cls: 'l-p50' },
      { name: 'p95', values: s.p95, cls: 'l-p95' }], fmtLatency));
}

/** SVG path data; a null value breaks the line (a lone point is drawn as a dot). */
function pathData(times, values, x, y) {
  let d = '';
  let open = false;
  values.forEach((v, i) => {
    if (v == null) { open = false; return; }
    const px = x(times[i]).toFixed(1);
    const py = y(v).toFixed(1);
    const isolated = !open && values[i + 1] == null;
    d += open ? ` L${px} ${py}` : ` M${px} ${py}${isolated ? ' h0.01' : ''}`;
    open = true;
  });
  return d.trim();
}

const minutesAgo = (t) => {
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 5) return 'now';
  return s < 120 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
};

function lineChart(title, times, lines, fmt) {
  const W = 320, H = 130, L = 56, R = 10, T = 8, B = 20;
  const all = lines.flatMap((l) => l.values).filter((v) => v != null);
  const lo = Math.min(0, ...all);
  const hi = all.length && Math.max(...all) > lo ? Math.max(...all) : lo + 1;
  const t0 = times[0];
  const t1 = times[times.length - 1];
  const span = Math.max(t1 - t0, 1);
  const x = (t) => L + ((t - t0) / span) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);

  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title },
    svg('line', { x1: L, y1: T, x2: W - R, y2: T, class: 'gridline' }),
    svg('line', { x1: L, y1: T, x2: L, y2: H - B, class: 'axis' }),
    svg('line', { x1: L, y1: H - B, x2: W - R, y2: H - B, class: 'axis' }),
    svg('text', { x: L - 4, y: T + 4, class: 'ylabel' }, fmt(hi)),
    svg('text', { x: L - 4, y: H - B, class: 'ylabel' }, fmt(lo)));
  for (const [t, anchor] of [[t0, 'start'], [t0 + span / 2, 'middle'], [t1, 'end']]) {
    chart.append(svg('text', { x: x(t), y: H - 5, class: 'xlabel', 'text-anchor': anchor }, minutesAgo(t)));
  }
  for (const line of lines) {
    chart.append(svg('path', { d: pathData(times, line.values, x, y), class: `line ${line.cls}` }));
  }
  const latest = lines.map((l) => {
    const last = [...l.values].reverse().find((v) => v != null);
    return h('span', { class: `latest ${l.cls}` }, (l.name ? `${l.name} ` : '') + fmt(last));
  });
  return h('figure', { class: 'chart-box' },
    h('figcaption', {}, h('span', { class: 'chart-title' }, title), h('span', {}, latest)), chart);
}

/* ---------- events list ---------- */

function eventsView(query) {
  const filters = {};
  for (const f of FILTER_FIELDS) {
    const v = query.get(f);
    if (v) filters[f] = v;
  }
  const before = query.get('before') || '';
  const scope = new URLSearchParams(filters).toString();
  if (scope !== state.selectionScope) {
    state.selected.clear();
    state.selectionScope = scope;
  }

  const pickAll = h('input', { type: 'checkbox', class: 'pick-all', title: 'Select the rows shown' });
  const tbody = h('tbody');
  const actionsBar = h('div', { class: 'bulk' });
  $('#view').replaceChildren(
    filterForm(filters),
    h('div', { class: 'list-head' },
      h('p', { class: 'count' }, h('span', { id: 'count' }, '…'), ' matching events'),
      actionsBar),
    h('table', { id: 'events', class: 'grid' },
      h('thead', {}, h('tr', {}, h('th', { class: 'pick-col' }, pickAll),
        ['ID', 'Routing key', 'Aggregate', 'Status', 'Retries', 'Occurred', 'Next retry', 'Last error']
          .map((t) => h('th', { class: t === 'Retries' ? 'num' : null }, t)))),
      tbody),
    h('div', { class: 'pager' },
      h('button', { id: 'first', type: 'button', hidden: !before, onclick: () => goPage('') }, 'Newest'),
      h('button', { id: 'next', type: 'button', hidden: true }, 'Older')));

  function goPage(cursor) {
    const q = new URLSearchParams(filters);
    if (cursor) q.set('before', cursor);
    navigate('#/events' + (q.toString() ? `?${q}` : ''));
  }

  function updatePicked() {
    const n = state.selected.size;
    const btn = $('#replay-selected');
    if (btn) btn.disabled = n === 0;
    const label = $('#picked');
    if (label) label.textContent = n ? `${fmtNum(n)} selected` : '';
    const boxes = [...tbody.querySelectorAll('input.pick')];
    for (const box of boxes) box.checked = state.selected.has(box.dataset.id);
    pickAll.checked = boxes.length > 0 && boxes.every((b) => b.checked);
  }

  tbody.addEventListener('change', (e) => {
    if (!e.target.matches('input.pick')) return;
    if (e.target.checked) state.selected.add(e.target.dataset.id);
    else state.selected.delete(e.target.dataset.id);
    updatePicked();
  });
  pickAll.addEventListener('change', () => {
    for (const box of tbody.querySelectorAll('input.pick')) {
      box.checked = pickAll.checked;
      if (box.checked) state.selected.add(box.dataset.id);
      else state.selected.delete(box.dataset.id);
    }
    updatePicked();
  });

  function renderActions(meta) {
    if (!meta.actions || actionsBar.childElementCount) return;
    actionsBar.append(
      h('button', { id: 'replay-selected', type: 'button', disabled: true, onclick: replaySelected },
        'Replay selected'),
      h('span', { id: 'picked', class: 'muted' }),
      h('button', { id: 'replay-all', type: 'button', onclick: () => bulkAction('replay') },
        'Replay all matching'),
      h('button', { id: 'purge-all', type: 'button', class: 'danger', onclick: () => bulkAction('purge') },
        'Delete all matching'));
    updatePicked();
  }

  function replaySelected() {
    const ids = [...state.selected];
    const n = ids.length;
    return runAction({
      text: `Replay ${plural(n, 'selected event')}? The FAILED ${n === 1 ? 'one goes' : 'ones go'} back to PENDING and ${n === 1 ? 'is' : 'are'} delivered again.`,
      ok: 'Replay', action: 'replay', body: { ids },
      done: (res) => { state.selected.clear(); return `${plural(res.done, 'event')} replayed`; },
    });
  }

  /** Replay or delete every FAILED event matching the filter (the status filter is ignored). */
  async function bulkAction(kind) {
    const filter = apiFilters(filters);
    delete filter.status;
    let n;
    try {
      n = (await getJson('/api/count?' + new URLSearchParams({ ...filter, status: 'FAILED' }))).count;
    } catch (e) {
      showError(e);
      return;
    }
    if (!n) {
      showNotice('No FAILED events match the filter.');
      return;
    }
    const what = `${plural(n, 'FAILED event')}${Object.keys(filter).length ? ' matching the filter' : ''}`;
    const one = n === 1;
    const body = { filter: { ...filter } };
    if (body.filter.since) body.filter.since = Number(body.filter.since);
    await runAction(kind === 'replay' ? {
      text: `Replay ${what}? ${one ? 'It goes' : 'They go'} back to PENDING and ${one ? 'is' : 'are'} delivered again.`,
      ok: 'Replay', action: 'replay', body, done: (res) => `${plural(res.done, 'event')} replayed`,
    } : {
      text: `Delete ${what}? ${one ? 'It is' : 'They are'} removed from the outbox for good; this cannot be undone.`,
      ok: 'Delete', action: 'purge', body, done: (res) => `${plural(res.done, 'event')} deleted`,
    });
  }

  return {
    async refresh(stale) {
      const meta = await ensureMeta();
      if (stale()) return;
      renderActions(meta);
      const q = new URLSearchParams(apiFilters(filters));
      if (before) q.set('before', before);
      // The count may time out on a very large table; the list still shows.
      const [listed, counted] = await Promise.allSettled([
        getJson(`/api/events?${q}`), getJson(`/api/count?${new URLSearchParams(apiFilters(filters))}`)]);
      if (stale()) return;
      if (listed.status === 'rejected') throw listed.reason;
      const list = listed.value;
      $('#count').textContent = counted.status === 'fulfilled' ? fmtNum(counted.value.count) : '?';
      const next = $('#next');
      next.hidden = !list.next;
      next.onclick = () => goPage(list.next);
      renderIfChanged(tbody, list.events, () => {
        tbody.replaceChildren(...(list.events.length ? list.events.map(eventRow)
          : [h('tr', { class: 'empty' }, h('td', { colspan: 9 }, 'No events match.'))]));
      });
      updatePicked();
    },
  };
}

function eventRow(ev) {
  const error = ev.lastError == null ? '' : String(ev.lastError);
  return h('tr', { 'data-id': ev.id },
    h('td', { class: 'pick-col' },
      h('input', { type: 'checkbox', class: 'pick', 'data-id': ev.id, checked: state.selected.has(ev.id) })),
    h('td', { class: 'id' }, h('a', { href: eventHref(ev.id) }, ev.id)),
    h('td', {}, ev.routingKey),
    h('td', {}, ev.aggregateId),
    h('td', {}, statusBadge(ev.status, ev.retryCount)),
    h('td', { class: 'num' }, fmtNum(ev.retryCount)),
    h('td', { class: 'time', title: fmtAgo(ev.occurredAt) }, fmtTime(ev.occurredAt)),
    h('td', { class: 'time', title: ev.nextRetryAt ? fmtAgo(ev.nextRetryAt) : null }, fmtTime(ev.nextRetryAt)),
    h('td', { class: 'error', title: error || null }, error));
}

function filterForm(filters) {
  const select = (name, options) => {
    const el = h('select', { name }, options.map(([v, label]) => h('option', { value: v }, label)));
    if (filters[name] && !options.some(([v]) => v === filters[name])) {
      el.append(h('option', { value: filters[name] }, `${filters[name]} s`)); // a hand-written value
    }
    el.value = filters[name] || '';
    return el;
  };
  const input = (name, placeholder) =>
    h('input', { name, value: filters[name] || '', placeholder, autocomplete: 'off', spellcheck: 'false' });
  const field = (label, control) => h('label', {}, h('span', {}, label), control);

  const form = h('form', { id: 'filters', class: 'filters' },
    field('Status', select('status', [['', 'any'], ...STATUSES.map((s) => [s, s])])),
    field('Routing key', input('routingKey', 'exact key')),
    field('Aggregate', input('aggregateId', 'aggregate id')),
    field('Event id', input('id', 'event id')),
    field('Occurred', select('since', SINCE_CHOICES.map(([v, l]) => [v, v ? `last ${l}` : l]))),
    field('From', h('input', { name: 'from', type: 'datetime-local', step: 1, value: filters.from || '' })),
    field('Until', h('input', { name: 'to', type: 'datetime-local', step: 1, value: filters.to || '' })),
    field('Last error contains', input('error', 'text')),
    h('button', { id: 'apply', type: 'submit', class: 'primary' }, 'Apply'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const q = new URLSearchParams();
    for (const f of FILTER_FIELDS) {
      const v = String(data.get(f) || '').trim();
      if (v) q.set(f, v);
    }
    navigate('#/events' + (q.toString() ? `?${q}` : ''));
  });
  return form;
}

/* ---------- one event ---------- */

function eventView(id) {
  const body = h('div', { class: 'event-body' }, h('p', { class: 'muted' }, 'Loading…'));
  $('#view').replaceChildren(
    h('p', { class: 'crumbs' }, h('a', { href: '#/events' }, 'Events'), ' / ', h('span', { class: 'id' }, id)),
    body);

  function renderEvent(text, meta) {
    const data = JSON.parse(text);
    const raw = rawMembers(text);
    const ev = data.event || {};
    const rawHeaders = rawMembers(raw.event || '{}').headers;
    const rows = Object.entries(ev).map(([name, value]) => {
      let dd;
      if (value == null) dd = h('dd', { class: 'muted' }, '—');
      else if (typeof value === 'object') dd = h('dd', {}, name === 'headers' ? 'below' : JSON.stringify(value));
      else if (/(At|Until)$/.test(name) && !isNaN(Date.parse(value))) {
        dd = h('dd', { title: String(value) }, fmtTime(value), ' ', h('span', { class: 'muted' }, `(${fmtAgo(value)})`));
      } else if (name === 'status') dd = h('dd', {}, statusBadge(value, ev.retryCount));
      else if (name === 'lastError') dd = h('dd', { class: 'error', title: String(value) }, String(value));
      else dd = h('dd', {}, String(value));
      return [h('dt', {}, name), dd];
    });
    const buttons = meta.actions && ev.status === 'FAILED' && h('div', { class: 'bulk' },
      h('button', { id: 'replay-one', type: 'button', onclick: () => runAction({
        text: `Replay 1 FAILED event ("${id}")? It goes back to PENDING and is delivered again.`,
        ok: 'Replay', action: 'replay', body: { ids: [id] },
        done: (res) => `${plural(res.done, 'event')} replayed`,
      }) }, 'Replay'),
      h('button', { id: 'purge-one', type: 'button', class: 'danger', onclick: async () => {
        const ok = await runAction({
          text: `Delete 1 FAILED event ("${id}")? It is removed from the outbox for good; this cannot be undone.`,
          ok: 'Delete', action: 'purge', body: { ids: [id] },
          done: (res) => `${plural(res.done, 'event')} deleted`,
        });
        if (ok) navigate(eventsHref({ status: 'FAILED' }));
      } }, 'Delete'));
    body.replaceChildren(
      h('div', { class: 'event-head' }, h('h2', {}, 'Event'), buttons),
      h('dl', { id: 'event', class: 'fields' }, rows),
      h('h3', {}, 'Payload'),
      h('pre', { id: 'payload', class: 'code' }, payloadText(raw.payload)),
      h('h3', {}, 'Headers'),
      h('pre', { id: 'headers', class: 'code' }, rawHeaders == null ? 'null' : payloadText(rawHeaders)),
      h('h3', {}, 'Last error'),
      h('pre', { id: 'last-error', class: 'code error-text' }, ev.lastError == null ? '—' : String(ev.lastError)));
  }

  return {
    async refresh(stale) {
      const meta = await ensureMeta();
      let text;
      try {
        text = await request(`/api/events/${encodeURIComponent(id)}`);
      } catch (e) {
        if (e.status !== 404) throw e;
        if (!stale()) body.replaceChildren(h('p', { class: 'muted' }, 'There is no event with id ', h('code', {}, id), '.'));
        return;
      }
      if (stale()) return;
      renderIfChanged(body, [text, meta.actions], () => renderEvent(text, meta));
    },
  };
}

/* ---------- start ---------- */

function init() {
  takeTokenFromUrl();

  const refresh = $('#refresh');
  const saved = localStorage.getItem('outbox.refresh');
  refresh.value = REFRESH_CHOICES.includes(saved) ? saved : '5';
  refresh.addEventListener('change', () => {
    localStorage.setItem('outbox.refresh', refresh.value);
    scheduleRefresh();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) clearTimeout(state.timer);
    else if (!state.confirmResolve && !state.needToken) refreshView();
  });

  $('#token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('#token').value.trim();
    if (!token) return;
    saveToken(token);
    $('#token').value = '';
    $('#token-form').hidden = true;
    state.needToken = false;
    state.meta = null;
    refreshView();
  });

  $('#confirm-ok').addEventListener('click', () => closeConfirm(true));
  $('#confirm-cancel').addEventListener('click', () => closeConfirm(false));
  $('#confirm').addEventListener('click', (e) => { if (e.target.id === 'confirm') closeConfirm(false); });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && state.confirmResolve) closeConfirm(false);
  });
  $('#error-close').addEventListener('click', hideError);

  $('#view').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-action]');
    if (button) onOverviewAction(button);
  });

  window.addEventListener('hashchange', route);
  route();
}

init();
