// weft dashboard: one page, hash routes, no libraries.
//
// Pages: #/topology (default), #/services, #/service/NAME, #/tap?..., #/config.
// Everything shown comes from the same-origin JSON API (/v1/ui/overview,
// /v1/ui/tap, /v1/health/service/NAME, /v1/config). Names come from the
// network, so the DOM is only ever built with createElement/textContent,
// never innerHTML. The server's CSP forbids inline scripts and styles: no
// style attributes are written either (SVG geometry goes through attributes).
//
// Each page runs in a PageContext: its timers die when the route changes,
// and answers that arrive after that are dropped. document.body.dataset.page
// names the page; dataset.loaded is "1" once its first data is drawn.
'use strict';

(() => {
  // ------------------------------------------------------------ constants --

  const TOKEN_KEY = 'weft-token';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const REFRESH_MS = 2000;          // overview-based pages
  const CONFIG_REFRESH_MS = 5000;   // the config page
  const CONFIG_EVERY_TICKS = 5;     // the service page re-reads /v1/config every 5th refresh
  const TAP_POLL_MS = 1000;
  const TAP_MAX_ROWS = 500;
  const BAD_SUCCESS = 0.99;         // below this (with traffic), drawn red
  const KIND_ORDER = ['Service', 'Route', 'TrafficPolicy', 'AuthorizationPolicy', 'Telemetry'];

  const $ = (sel) => document.querySelector(sel);
  const main = $('#main');
  const errorBox = $('#error');
  const updatedLabel = $('#updated');
  const dialog = $('#token-dialog');
  const tokenForm = $('#token-form');
  const tokenInput = $('#token');
  const tokenButton = $('#token-button');

  // ---------------------------------------------------------- DOM helpers --

  // h('td', {class: 'x', text: 'y', data: {service: n}, on: {click: f}}, ...children)
  // Other props become attributes. Children: nodes, strings (as text), arrays;
  // null/undefined/false are skipped.
  function h(tag, props, ...children) {
    return build(document.createElement(tag), props, children);
  }

  // The same for SVG elements.
  function s(tag, props, ...children) {
    return build(document.createElementNS(SVG_NS, tag), props, children);
  }

  function build(node, props, children) {
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'text') node.textContent = String(v);
        else if (k === 'data') for (const [dk, dv] of Object.entries(v)) node.dataset[dk] = String(dv);
        else if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
        else node.setAttribute(k, v === true ? '' : String(v));
      }
    }
    appendAll(node, children);
    return node;
  }

  function appendAll(node, children) {
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) appendAll(node, c);
      else node.append(c instanceof Node ? c : String(c));
    }
  }

  // Sets an element's text only when it changed (keeps selections stable).
  function setText(el, text) {
    const t = String(text);
    if (el.textContent !== t || el.childElementCount) el.textContent = t;
  }

  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  }

  // --------------------------------------------------------------- format --

  const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const pad = (n, w = 2) => String(n).padStart(w, '0');

  function fmtRps(v) { return (num(v) ?? 0).toFixed(1); }
  // Success as shown: a fraction with 3 decimals (0.995), or null.
  function fracOf(v) { const n = num(v); return n === null || n < 0 ? null : Math.round(n * 1000) / 1000; }
  function fmtFrac(v) { const f = fracOf(v); return f === null ? '' : String(f); }
  function fmtPct(v) { const f = fracOf(v); return f === null ? '–' : (f * 100).toFixed(1) + '%'; }
  // Latency as shown: ms with at most one decimal, or null (the API's -1: no requests).
  function msOf(v) { const n = num(v); return n === null || n < 0 ? null : Math.round(n * 10) / 10; }
  function fmtMs(v, sep = ' ') { const m = msOf(v); return m === null ? '–' : `${m}${sep}ms`; }
  function isBad(success, rps) {
    const sv = num(success);
    return (num(rps) ?? 0) > 0 && sv !== null && sv >= 0 && sv < BAD_SUCCESS;
  }

  function fmtClock(ms, withMillis) {
    const d = new Date(ms);
    const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return withMillis ? `${hms}.${pad(d.getMilliseconds(), 3)}` : hms;
  }

  function fmtDateTime(ms) {
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function fmtHoursMinutes(seconds) {
    const m = Math.floor(Math.abs(seconds) / 60);
    return `${Math.floor(m / 60)}h ${m % 60}m`;
  }

  const byName = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

  // ---------------------------------------------------------- error banner --

  // Messages by source ("overview", "health", "bug", ...), so one source
  // recovering clears only its own line.
  const errors = new Map();

  function setError(key, message) {
    if (errors.get(key) === message) return;
    errors.set(key, message);
    renderErrors();
  }

  function clearError(key) {
    if (errors.delete(key)) renderErrors();
  }

  function renderErrors() {
    const lines = [...errors.values()].map((m) => h('div', { class: 'error-line', text: m }));
    const close = h('button', {
      type: 'button', class: 'banner-close', title: 'Dismiss', 'aria-label': 'Dismiss',
      on: { click: () => { errors.clear(); renderErrors(); } },
    });  // its × is drawn by CSS, so the banner's text is only the messages
    errorBox.replaceChildren(close, ...lines);
    errorBox.hidden = errors.size === 0;
  }

  // A programming error: shown, never lost in the console.
  function reportBug(e) {
    const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    setError('bug', `dashboard error: ${what}`);
  }

  window.addEventListener('error', (ev) => {
    reportBug(ev.error || ev.message);
    ev.preventDefault();
  });
  window.addEventListener('unhandledrejection', (ev) => {
    reportBug(ev.reason);
    ev.preventDefault();
  });

  // ----------------------------------------------------------------- token --

  function getToken() {
    try { return localStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
  }

  function storeToken(token) {
    try {
      if (token) localStorage.setItem(TOKEN_KEY, token);
      else localStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      setError('token', `the token cannot be stored in this browser: ${e.message}`);
    }
  }

  function updateTokenButton() {
    tokenButton.textContent = getToken() ? 'Token ✓' : 'Token';
  }

  function openTokenDialog() {
    if (dialog.open) return;
    tokenInput.value = '';  // the stored token is never shown
    tokenInput.placeholder = getToken() ? 'a token is stored; paste a new one' : 'paste an ACL token';
    if (typeof dialog.showModal === 'function') dialog.showModal();
    else dialog.setAttribute('open', '');
    tokenInput.focus();
  }

  function closeTokenDialog() {
    if (typeof dialog.close === 'function') { if (dialog.open) dialog.close(); }
    else dialog.removeAttribute('open');
  }

  // A 403 opens the dialog once per stored token: dismissing it is respected
  // until the token changes (the banner keeps saying what is missing).
  let promptedFor = null;
  function promptForToken() {
    const t = getToken();
    if (promptedFor === t) return;
    promptedFor = t;
    openTokenDialog();
  }

  tokenButton.addEventListener('click', openTokenDialog);
  $('#token-cancel').addEventListener('click', closeTokenDialog);
  tokenForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    storeToken(tokenInput.value.trim());
    tokenInput.value = '';
    closeTokenDialog();
    promptedFor = null;
    updateTokenButton();
    errors.clear();
    renderErrors();
    route();  // reload the page's data with the new token
  });

  // ------------------------------------------------------------------- API --

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.name = 'ApiError';
      this.status = status;
    }
  }

  // GET path as JSON, with the stored token. Throws ApiError with a message
  // fit for the banner (a 403's text is the server's: it names the missing
  // permission).
  async function api(path) {
    const headers = { Accept: 'application/json' };
    const token = getToken();
    if (token) headers['X-Consul-Token'] = token;
    let res;
    try {
      res = await fetch(path, { headers, cache: 'no-store', credentials: 'same-origin' });
    } catch (e) {
      throw new ApiError(0, `GET ${path}: the server cannot be reached (${e && e.message ? e.message : e})`);
    }
    if (!res.ok) {
      let text = '';
      try { text = (await res.text()).trim().slice(0, 1000); } catch (_) { /* the status says enough */ }
      if (res.status === 403) throw new ApiError(403, `${text || 'Permission denied'} (GET ${path}: 403)`);
      throw new ApiError(res.status, `GET ${path}: ${res.status} ${text || res.statusText}`);
    }
    try {
      return await res.json();
    } catch (e) {
      throw new ApiError(res.status, `GET ${path}: the answer is not JSON (${e.message})`);
    }
  }

  // api() for a page: the answer, or null when it failed (the error is in
  // the banner under `key`) or the page is gone. Programming errors propagate.
  async function load(ctx, key, path) {
    try {
      const data = await api(path);
      if (!ctx.alive) return null;
      clearError(key);
      return data;
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      if (!ctx.alive) return null;
      setError(key, e.message);
      if (e.status === 403) promptForToken();
      return null;
    }
  }

  // The overview, normalized (arrays always present), its partial-data
  // error shown, the top bar's clock updated.
  // `history`: whether the page draws the series (the topology and the tap
  // do not: their answers are a fraction of the size).
  async function loadOverview(ctx, history = true) {
    const ov = await load(ctx, 'overview', history ? '/v1/ui/overview' : '/v1/ui/overview?history=0');
    if (!ov) return null;
    if (typeof ov !== 'object') {
      setError('overview', 'GET /v1/ui/overview: unexpected answer');
      return null;
    }
    const list = (v) => (Array.isArray(v) ? v.filter((x) => x && typeof x === 'object') : []);
    ov.services = list(ov.services).filter((x) => typeof x.name === 'string');
    ov.edges = list(ov.edges).filter((x) => typeof x.source === 'string' && typeof x.destination === 'string');
    ov.sidecars = list(ov.sidecars);
    if (ov.error) setError('partial', `some data could not be gathered: ${ov.error}`);
    else clearError('partial');
    const t = num(ov.updated_ms);
    updatedLabel.textContent = t ? `updated ${fmtClock(t)}` : '';
    return ov;
  }

  // ----------------------------------------------------------------- pages --

  class PageContext {
    constructor(name) {
      this.name = name;
      this.stopped = false;
      this.timers = new Set();
    }

    get alive() { return !this.stopped && current === this; }

    stop() {
      this.stopped = true;
      for (const t of this.timers) clearTimeout(t);
      this.timers.clear();
    }

    later(ms, fn) {
      if (!this.alive) return;
      const id = setTimeout(() => {
        this.timers.delete(id);
        if (this.alive) fn();
      }, ms);
      this.timers.add(id);
    }

    // Runs fn now, then `ms` after each run ends (never two at once). Waits
    // while the token dialog is open, so a 403 is not repeated behind it.
    every(ms, fn) {
      const tick = async () => {
        if (dialog.open) { this.later(300, tick); return; }
        // A tab nobody sees asks nothing (after its first answer).
        if (document.hidden && document.body.dataset.loaded) { this.later(1000, tick); return; }
        try { await fn(); } catch (e) { reportBug(e); }
        this.later(ms, tick);
      };
      tick();
    }

    loaded() {
      if (!this.alive) return;
      document.body.dataset.loaded = '1';
      // When the first page of this visit had its data drawn (ms since the
      // navigation began): what "renders in under 1 s" is measured by.
      if (!document.body.dataset.firstLoadedMs)
        document.body.dataset.firstLoadedMs = String(Math.round(performance.now()));
    }
  }

  let current = null;

  function safeDecode(text) {
    try { return decodeURIComponent(text); } catch (_) { return text; }
  }

  function parseHash() {
    let raw = location.hash.replace(/^#\/?/, '');
    let query = '';
    const q = raw.indexOf('?');
    if (q >= 0) { query = raw.slice(q + 1); raw = raw.slice(0, q); }
    const params = new URLSearchParams(query);
    const [head, ...rest] = raw.split('/');
    if (head === '' || head === 'topology') return { page: 'topology', params };
    if (head === 'service') {
      const name = safeDecode(rest.join('/'));
      return name ? { page: 'service', name, params } : { page: 'services', params };
    }
    if (head === 'services' || head === 'tap' || head === 'config') return { page: head, params };
    return { page: 'notfound', params };
  }

  function route() {
    if (current) current.stop();
    const r = parseHash();
    const ctx = new PageContext(r.page);
    current = ctx;
    document.body.dataset.page = r.page;
    delete document.body.dataset.loaded;
    for (const key of [...errors.keys()]) if (key !== 'bug' && key !== 'token') errors.delete(key);
    renderErrors();
    const navPage = r.page === 'service' ? 'services' : r.page;
    for (const a of document.querySelectorAll('a[data-nav]')) {
      const on = a.dataset.nav === navPage;
      a.classList.toggle('active', on);
      if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    main.replaceChildren();
    window.scrollTo(0, 0);
    try {
      PAGES[r.page](ctx, r);
    } catch (e) {
      reportBug(e);
    }
  }

  // ------------------------------------------------------------ sparklines --

  // Draws column `col` of an overview history ([[t_ms, rps, success, p99], ...])
  // into `svg` as polyline.line (plus a filled path.area under it). Negative
  // values (the API's "no requests") are left out. opts: w, h, min, max
  // (default: 0 .. the largest value).
  function drawSpark(svg, history, col, opts) {
    const w = opts.w, ht = opts.h, m = 2;
    const pts = [];
    for (const row of Array.isArray(history) ? history : []) {
      if (!Array.isArray(row)) continue;
      const t = num(row[0]), v = num(row[col]);
      if (t !== null && v !== null && v >= 0) pts.push([t, v]);
    }
    let lo = opts.min ?? 0;
    let hi = opts.max ?? Math.max(0, ...pts.map((p) => p[1]));
    if (opts.fitMin && pts.length) lo = Math.min(lo, ...pts.map((p) => p[1]));
    if (hi <= lo) hi = lo + 1;
    const t0 = pts.length ? pts[0][0] : 0;
    const span = pts.length > 1 ? pts[pts.length - 1][0] - t0 : 0;
    const xy = pts.map(([t, v], i) => {
      const fx = span > 0 ? (t - t0) / span : (pts.length > 1 ? i / (pts.length - 1) : 1);
      const fy = (Math.min(Math.max(v, lo), hi) - lo) / (hi - lo);
      return [+(m + fx * (w - 2 * m)).toFixed(1), +(ht - m - fy * (ht - 2 * m)).toFixed(1)];
    });
    if (svg.getAttribute('viewBox') !== `0 0 ${w} ${ht}`) {
      setAttrs(svg, { viewBox: `0 0 ${w} ${ht}`, preserveAspectRatio: 'none' });
    }
    let line = svg.querySelector('polyline');
    let area = svg.querySelector('path.area');
    if (!line) {
      line = s('polyline', { class: 'line' });
      area = s('path', { class: 'area' });
      svg.append(line, area);
    }
    line.setAttribute('points', xy.map((p) => p.join(',')).join(' '));
    area.setAttribute('d', xy.length > 1
      ? `M${xy[0][0]},${ht - m} L${xy.map((p) => p.join(',')).join(' L')} L${xy[xy.length - 1][0]},${ht - m} Z`
      : '');
    return pts;
  }

  // ------------------------------------------------------------- row sync --

  // Keeps tbody's rows in step with `items` without rebuilding them:
  // key(item) names a row, create(item) makes {tr, ...refs}, update(refs,
  // item) fills it. Rows follow the order of `items`; an empty list shows
  // one tr.empty with `emptyText`.
  const rowCaches = new WeakMap();
  function syncRows(tbody, items, { key, create, update, emptyText, cols }) {
    let cache = rowCaches.get(tbody);
    if (!cache) { cache = new Map(); rowCaches.set(tbody, cache); }
    const seen = new Set();
    for (const item of items) {
      const k = key(item);
      if (seen.has(k)) continue;
      seen.add(k);
      let row = cache.get(k);
      if (!row) { row = create(item); cache.set(k, row); }
      update(row, item);
      tbody.append(row.tr);  // moves an existing row into place
    }
    for (const [k, row] of cache) {
      if (!seen.has(k)) { row.tr.remove(); cache.delete(k); }
    }
    const empty = tbody.querySelector('tr.empty');
    if (seen.size === 0 && !empty) tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: cols, text: emptyText })));
    else if (seen.size > 0 && empty) empty.remove();
  }

  function table(id, headers, tbody, cls = 'grid') {
    return h('table', { id, class: cls },
      h('thead', null, h('tr', null, headers.map((t) => h('th', { text: t })))), tbody);
  }

  function serviceLink(name) {
    return h('a', { href: `#/service/${encodeURIComponent(name)}`, text: name });
  }

  // ------------------------------------------------------------- topology --

  // Stats per node: a service's own, or for a name seen only as an edge end
  // (a virtual service, a traffic source) what its edges carry: what comes
  // in (rate, success weighted by rate, worst p99), else what goes out.
  function topologyModel(ov) {
    const services = new Map();
    for (const svc of ov.services) if (!services.has(svc.name)) services.set(svc.name, svc);
    const edges = [];
    const edgeKeys = new Set();
    for (const e of ov.edges) {
      const k = `${e.source}\n${e.destination}`;
      if (!edgeKeys.has(k)) { edgeKeys.add(k); edges.push(e); }
    }
    const names = new Set(services.keys());
    for (const e of edges) { names.add(e.source); names.add(e.destination); }
    const stats = new Map();
    for (const name of [...names].sort(byName)) {
      const svc = services.get(name);
      if (svc) {
        stats.set(name, { rps: svc.rps, success: svc.success, p99: svc.p99_ms, svc, virtual: false });
        continue;
      }
      const inbound = edges.filter((e) => e.destination === name);
      const outbound = edges.filter((e) => e.source === name);
      const rate = (list) => list.reduce((a, e) => a + (num(e.rps) ?? 0), 0);
      let st = { rps: rate(outbound), success: null, p99: null, virtual: true };
      if (inbound.length) {
        const total = rate(inbound);
        const ok = inbound.reduce((a, e) => a + (num(e.rps) ?? 0) * (num(e.success) ?? 1), 0);
        const p99 = Math.max(-1, ...inbound.map((e) => num(e.p99_ms) ?? -1));
        st = { rps: total, success: total > 0 ? ok / total : null, p99, virtual: true };
      }
      stats.set(name, st);
    }
    return { names: [...stats.keys()], edges, stats };
  }

  // Deterministic layered layout. Cycles are broken by a depth-first search
  // in name order (sources first): an edge into a node still on the stack is
  // a "back" edge, left out of the layering. Each node's column is its
  // longest path from a source; nodes without edges get a last column of
  // their own. Within a column, nodes sort by the mean row of their
  // predecessors (fewer crossings), then by name.
  function layeredLayout(names, edges) {
    const succ = new Map(names.map((n) => [n, []]));
    const pred = new Map(names.map((n) => [n, []]));
    const linked = new Set();
    for (const e of edges) {
      linked.add(e.source);
      linked.add(e.destination);
      if (e.source !== e.destination) {
        succ.get(e.source).push(e.destination);
        pred.get(e.destination).push(e.source);
      }
    }
    for (const list of succ.values()) list.sort(byName);

    const state = new Map();  // 1: on the stack, 2: done
    const back = new Set();
    const postorder = [];
    const visit = (n) => {
      state.set(n, 1);
      for (const m of succ.get(n)) {
        if (state.get(m) === 1) back.add(`${n}\n${m}`);
        else if (!state.has(m)) visit(m);
      }
      state.set(n, 2);
      postorder.push(n);
    };
    const roots = names.filter((n) => linked.has(n));
    for (const n of roots) if (!pred.get(n).length && !state.has(n)) visit(n);
    for (const n of roots) if (!state.has(n)) visit(n);

    const layer = new Map(roots.map((n) => [n, 0]));
    for (const n of postorder.reverse()) {  // a topological order without back edges
      for (const m of succ.get(n)) {
        if (!back.has(`${n}\n${m}`)) layer.set(m, Math.max(layer.get(m), layer.get(n) + 1));
      }
    }
    let columnsCount = roots.length ? Math.max(...layer.values()) + 1 : 0;
    const isolated = names.filter((n) => !linked.has(n));
    if (isolated.length) {
      for (const n of isolated) layer.set(n, columnsCount);
      columnsCount += 1;
    }

    const columns = Array.from({ length: columnsCount }, () => []);
    for (const n of names) columns[layer.get(n)].push(n);
    const row = new Map();
    columns.forEach((col, ci) => {
      const weight = new Map(col.map((n) => {
        const rows = pred.get(n).filter((p) => layer.get(p) < ci && row.has(p)).map((p) => row.get(p));
        return [n, rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : Infinity];
      }));
      col.sort((a, b) => (weight.get(a) - weight.get(b)) || byName(a, b));
      col.forEach((n, i) => row.set(n, i));
    });
    return { columns, layer, back };
  }

  const NODE_R = 18;
  const COL_W = 270;
  const ROW_H = 100;
  const MARGIN_X = 100;
  const MARGIN_Y = 50;

  class TopologyView {
    constructor(svg) {
      this.svg = svg;
      this.signature = null;
      this.nodes = new Map();  // name -> refs
      this.edges = new Map();  // "src\ndst" -> refs
    }

    update(ov) {
      const model = topologyModel(ov);
      // Same nodes and edges: update in place; otherwise lay out afresh.
      const sig = JSON.stringify([model.names, model.edges.map((e) => [e.source, e.destination])]);
      if (sig !== this.signature) {
        this.rebuild(model);
        this.signature = sig;
      }
      for (const [name, refs] of this.nodes) this.applyNode(refs, name, model.stats.get(name));
      for (const e of model.edges) this.applyEdge(this.edges.get(`${e.source}\n${e.destination}`), e);
    }

    rebuild(model) {
      const { columns, layer, back } = layeredLayout(model.names, model.edges);
      const tallest = Math.max(1, ...columns.map((c) => c.length));
      const pos = new Map();
      columns.forEach((col, ci) => {
        const top = MARGIN_Y + ((tallest - col.length) * ROW_H) / 2;
        col.forEach((n, i) => pos.set(n, { x: MARGIN_X + ci * COL_W, y: top + i * ROW_H }));
      });
      const width = Math.max(400, 2 * MARGIN_X + Math.max(0, columns.length - 1) * COL_W);
      const height = Math.max(160, 2 * MARGIN_Y + (tallest - 1) * ROW_H + 40);
      setAttrs(this.svg, { viewBox: `0 0 ${width} ${height}`, width, height });

      const arrow = (id) => s('marker', {
        id, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 11, markerHeight: 11,
        markerUnits: 'userSpaceOnUse', orient: 'auto',
      }, s('path', { d: 'M0,0 L10,5 L0,10 z' }));
      const defs = s('defs', null, arrow('arrow'), arrow('arrow-bad'));
      const edgeLayer = s('g', { class: 'edges' });
      const nodeLayer = s('g', { class: 'nodes' });

      this.edges.clear();
      for (const e of model.edges) {
        const geo = edgeGeometry(pos.get(e.source), pos.get(e.destination),
          layer.get(e.destination) - layer.get(e.source), back.has(`${e.source}\n${e.destination}`), MARGIN_Y + ((tallest - 1) * ROW_H) / 2);
        const path = s('path', { class: 'edge-line', d: geo.d });
        const label = s('text', { class: 'edge-label', x: geo.lx, y: geo.ly, 'text-anchor': 'middle' });
        const title = s('title');
        const g = s('g', { class: 'edge', data: { source: e.source, destination: e.destination } }, title, path, label);
        edgeLayer.append(g);
        this.edges.set(`${e.source}\n${e.destination}`, { g, path, label, title });
      }

      this.nodes.clear();
      for (const name of model.names) {
        const p = pos.get(name);
        const go = () => { location.hash = `#/service/${encodeURIComponent(name)}`; };
        const title = s('title');
        const circle = s('circle', { cx: p.x, cy: p.y, r: NODE_R });
        const label = s('text', { class: 'node-name', x: p.x, y: p.y + NODE_R + 16, 'text-anchor': 'middle' }, name);
        const rate = s('text', { class: 'node-rps', x: p.x, y: p.y + NODE_R + 30, 'text-anchor': 'middle' });
        const g = s('g', {
          class: 'node', tabindex: 0, role: 'link', data: { service: name },
          on: { click: go, keydown: (ev) => { if (ev.key === 'Enter') go(); } },
        }, title, circle, label, rate);
        nodeLayer.append(g);
        this.nodes.set(name, { g, rate, title });
      }
      this.svg.replaceChildren(defs, edgeLayer, nodeLayer);
      if (!model.names.length) {
        this.svg.append(s('text', { class: 'empty-note', x: width / 2, y: height / 2, 'text-anchor': 'middle' },
          'No services yet'));
      }
    }

    applyNode(refs, name, st) {
      const bad = isBad(st.success, st.rps);
      const { g } = refs;
      g.dataset.rps = fmtRps(st.rps);
      g.dataset.success = fmtFrac(st.success);
      g.classList.toggle('bad', bad);
      g.classList.toggle('virtual', st.virtual);
      g.classList.toggle('idle', !((num(st.rps) ?? 0) > 0));
      setText(refs.rate, `${fmtRps(st.rps)} rps`);
      const lines = [name, `${fmtRps(st.rps)} rps · ${fmtPct(st.success)} · p99 ${fmtMs(st.p99)}`];
      if (st.svc) {
        lines.push(`${st.svc.passing ?? 0}/${st.svc.instances ?? 0} instances passing`);
        if (st.svc.unreachable) lines.push(`${st.svc.unreachable} sidecar(s) unreachable`);
      } else {
        lines.push('no instances of its own (a virtual service or a traffic source)');
      }
      setText(refs.title, lines.join('\n'));
    }

    applyEdge(refs, e) {
      const bad = isBad(e.success, e.rps);
      const rps = num(e.rps) ?? 0;
      const m = msOf(e.p99_ms);
      const { g } = refs;
      g.dataset.rps = fmtRps(e.rps);
      g.dataset.success = fmtFrac(e.success);
      g.dataset.p99 = m === null ? '-1' : String(m);
      g.classList.toggle('bad', bad);
      g.classList.toggle('idle', !(rps > 0));
      // Busier edges draw thicker: 1.5px idle up to about 5.5px.
      refs.path.setAttribute('stroke-width', (1.5 + Math.min(4, Math.log10(1 + rps) * 1.5)).toFixed(2));
      refs.path.setAttribute('marker-end', bad ? 'url(#arrow-bad)' : 'url(#arrow)');
      const text = `${fmtRps(e.rps)} rps · ${fmtPct(e.success)} · p99 ${fmtMs(e.p99_ms, '')}`;
      setText(refs.label, text);
      setText(refs.title, `${e.source} → ${e.destination}\n${text}`);
    }
  }

  // An edge's path between two node centres: straight between neighbouring
  // columns, a quadratic curve when it skips columns (bowing away from the
  // drawing's middle row, where the nodes it skips tend to be) or runs
  // backwards (bowing to the other side of its reverse edge). Ends stop at
  // the circles. lx/ly: where its label goes.
  function edgeGeometry(a, b, span, isBack, midY) {
    if (a === b || (a.x === b.x && a.y === b.y)) {  // a service calling itself
      const r = NODE_R;
      return {
        d: `M${a.x - 8},${a.y - r + 2} C${a.x - 30},${a.y - r - 40} ${a.x + 30},${a.y - r - 40} ${a.x + 8},${a.y - r + 2}`,
        lx: a.x, ly: a.y - r - 36,
      };
    }
    const dx = b.x - a.x, dy = b.y - a.y;
    const len = Math.hypot(dx, dy);
    let bend = 0;  // > 0: to the left of travel (up, going right)
    if (isBack || span <= 0) bend = 45;
    else if (span > 1) bend = ((a.y + b.y) / 2 > midY ? -1 : 1) * (40 + 25 * span);
    // Control point: the midpoint pushed along the normal.
    const cx = (a.x + b.x) / 2 + (dy / len) * bend;
    const cy = (a.y + b.y) / 2 - (dx / len) * bend;
    const unit = (x, y) => { const l = Math.hypot(x, y) || 1; return [x / l, y / l]; };
    const [sx, sy] = unit(cx - a.x, cy - a.y);
    const [ex, ey] = unit(b.x - cx, b.y - cy);
    const x0 = a.x + sx * NODE_R, y0 = a.y + sy * NODE_R;
    const x2 = b.x - ex * (NODE_R + 3), y2 = b.y - ey * (NODE_R + 3);
    const f = (v) => v.toFixed(1);
    // Label: the curve's midpoint, a little above.
    const lx = 0.25 * x0 + 0.5 * cx + 0.25 * x2;
    const ly = 0.25 * y0 + 0.5 * cy + 0.25 * y2 - 7;
    return { d: `M${f(x0)},${f(y0)} Q${f(cx)},${f(cy)} ${f(x2)},${f(y2)}`, lx: f(lx), ly: f(ly) };
  }

  function pageTopology(ctx) {
    const svg = s('svg', { id: 'topology', role: 'img', 'aria-label': 'Service topology' });
    const note = h('span', { class: 'muted', text: 'Loading…' });
    main.append(
      h('div', { class: 'page-head' }, h('h1', { text: 'Topology' }), note),
      h('p', { class: 'legend muted' },
        'Edges: requests per second · success · p99 latency. Red: under 99% success. Click a service for details.'),
      h('div', { class: 'canvas' }, svg));
    const view = new TopologyView(svg);
    ctx.every(REFRESH_MS, async () => {
      const ov = await loadOverview(ctx, false);
      if (!ov) return;
      view.update(ov);
      setText(note, `${view.nodes.size} services · ${view.edges.size} edges`);
      ctx.loaded();
    });
  }

  // ------------------------------------------------------------- services --

  function pageServices(ctx) {
    const tbody = h('tbody');
    main.append(
      h('div', { class: 'page-head' }, h('h1', { text: 'Services' })),
      table('services', ['Service', 'Instances', 'RPS', 'Success', 'p50', 'p99', 'mTLS', 'RPS history'], tbody));
    ctx.every(REFRESH_MS, async () => {
      const ov = await loadOverview(ctx);
      if (!ov) return;
      const list = ov.services.slice().sort((a, b) => byName(a.name, b.name));
      syncRows(tbody, list, {
        key: (svc) => svc.name,
        cols: 8,
        emptyText: 'No services registered.',
        create: (svc) => {
          const td = Array.from({ length: 7 }, () => h('td'));
          td[0].append(serviceLink(svc.name));
          for (let i = 1; i < 7; i++) td[i].className = 'num';
          const spark = s('svg', { class: 'spark', 'aria-hidden': 'true' });
          const tr = h('tr', { data: { service: svc.name } }, td, h('td', { class: 'spark-cell' }, spark));
          return { tr, td, spark };
        },
        update: (row, svc) => {
          const { td } = row;
          const bad = isBad(svc.success, svc.rps);
          row.tr.classList.toggle('bad', bad);
          row.tr.dataset.rps = fmtRps(svc.rps);
          row.tr.dataset.success = fmtFrac(svc.success);
          const passing = num(svc.passing) ?? 0, total = num(svc.instances) ?? 0;
          setText(td[1], `${passing}/${total}`);
          td[1].classList.toggle('warn', passing < total);
          td[1].title = `${passing} of ${total} instances passing; ${svc.proxies ?? 0} sidecar(s)` +
            (svc.unreachable ? `, ${svc.unreachable} unreachable` : '');
          setText(td[2], fmtRps(svc.rps));
          setText(td[3], fmtPct(svc.success));
          td[3].classList.toggle('bad-text', bad);
          setText(td[4], fmtMs(svc.p50_ms));
          setText(td[5], fmtMs(svc.p99_ms));
          setText(td[6], fmtPct(svc.mtls));
          td[6].classList.toggle('warn', (num(svc.mtls) ?? 1) < 1 && (num(svc.rps) ?? 0) > 0);
          drawSpark(row.spark, svc.history, 1, { w: 120, h: 28 });
          row.spark.classList.toggle('bad', bad);
        },
      });
      ctx.loaded();
    });
  }

  // -------------------------------------------------------------- service --

  // Whether a manifest configures service `name`.
  function appliesTo(m, name) {
    const spec = m && typeof m.spec === 'object' && m.spec ? m.spec : {};
    if (spec.service === name || spec.service === '*') return true;
    if (m.kind === 'Service' && m.metadata && m.metadata.name === name) return true;
    return Array.isArray(spec.rules) && spec.rules.some((r) =>
      r && Array.isArray(r.backends) && r.backends.some((b) => b && b.service === name));
  }

  // An instance's health: its worst check (no checks: passing).
  function instanceHealth(checks) {
    const rank = (st) => (st === 'passing' ? 0 : st === 'warning' ? 1 : 2);
    let worst = 'passing';
    for (const c of checks) {
      const st = String(c.Status || 'critical');
      if (rank(st) > rank(worst)) worst = st;
    }
    return worst;
  }

  function statusBadge(status) {
    const cls = status === 'passing' ? 'ok' : status === 'warning' ? 'warn' : 'crit';
    return h('span', { class: `badge ${cls}`, text: status });
  }

  function pageService(ctx, name) {
    const stat = (key, label, unit) => {
      const value = h('span', { class: 'stat-value', data: { stat: key }, text: '–' });
      const chart = s('svg', { class: 'chart', data: { chart: key }, 'aria-hidden': 'true' });
      const peak = h('span', { class: 'muted chart-peak' });
      const card = h('div', { class: 'stat' },
        h('div', { class: 'stat-label' }, label), h('div', null, value, unit ? h('span', { class: 'unit', text: unit }) : null),
        chart, peak);
      return { card, value, chart, peak };
    };
    const stats = { rps: stat('rps', 'Requests', 'rps'), success: stat('success', 'Success'), p99: stat('p99', 'p99 latency') };
    const summary = h('p', { class: 'muted summary' });

    const instBody = h('tbody');
    const sideBody = h('tbody');
    const edgeBody = h('tbody');
    const configList = h('div', { class: 'manifests' }, h('p', { class: 'muted', text: 'Loading…' }));

    main.append(
      h('div', { class: 'page-head' },
        h('h1', null, h('span', { class: 'muted' }, 'service '), h('span', { id: 'service-name', text: name })),
        h('a', { id: 'tap-link', class: 'button', href: `#/tap?service=${encodeURIComponent(name)}` }, 'tap this service')),
      h('div', { class: 'stats' }, stats.rps.card, stats.success.card, stats.p99.card),
      summary,
      h('section', { id: 'instances' }, h('h2', { text: 'Instances' }),
        table('instances-table', ['Node', 'Address', 'ID', 'Health', 'Checks'], instBody)),
      h('section', { id: 'sidecars' }, h('h2', { text: 'Sidecars' }),
        table('sidecars-table', ['Name', 'Node', 'Admin', 'Via', 'State', 'Config', 'SPIFFE ID', 'Certificate expires'], sideBody)),
      h('section', { id: 'edges' }, h('h2', { text: 'Traffic' }),
        table('edges-table', ['Direction', 'Peer', 'RPS', 'Success', 'p99', 'RPS history'], edgeBody)),
      h('section', { id: 'config' }, h('h2', { text: 'Configuration' }), configList));

    let tick = 0;
    let lastConfig = null;
    ctx.every(REFRESH_MS, async () => {
      const withConfig = tick++ % CONFIG_EVERY_TICKS === 0;
      const [ov, health, config] = await Promise.all([
        loadOverview(ctx),
        load(ctx, 'health', `/v1/health/service/${encodeURIComponent(name)}`),
        withConfig ? load(ctx, 'config', '/v1/config') : Promise.resolve(undefined),
      ]);
      if (!ctx.alive) return;
      if (ov) renderOverview(ov);
      if (Array.isArray(health)) renderInstances(health);
      if (config) {
        const text = JSON.stringify(config);
        if (text !== lastConfig) {
          lastConfig = text;
          renderConfig(config);
        }
      } else if (config === null && lastConfig === null) {
        configList.replaceChildren(h('p', { class: 'muted', text: 'The configuration could not be read.' }));
      }
      if (ov) ctx.loaded();
    });

    function renderOverview(ov) {
      const model = topologyModel(ov);
      const st = model.stats.get(name) || { rps: 0, success: null, p99: null, virtual: true };
      setText(stats.rps.value, fmtRps(st.rps));
      setText(stats.success.value, fmtPct(st.success));
      stats.success.value.classList.toggle('bad-text', isBad(st.success, st.rps));
      setText(stats.p99.value, fmtMs(st.p99));
      const history = st.svc ? st.svc.history : [];
      const rpsPts = drawSpark(stats.rps.chart, history, 1, { w: 300, h: 70 });
      const okPts = drawSpark(stats.success.chart, history, 2, { w: 300, h: 70, min: 0.9, max: 1, fitMin: true });
      const p99Pts = drawSpark(stats.p99.chart, history, 3, { w: 300, h: 70 });
      const peak = (pts, f) => (pts.length ? `last ${pts.length} points; peak ${f(Math.max(...pts.map((p) => p[1])))}` : 'no history');
      setText(stats.rps.peak, peak(rpsPts, (v) => `${fmtRps(v)} rps`));
      setText(stats.success.peak, okPts.length
        ? `lowest ${fmtPct(Math.min(...okPts.map((p) => p[1])))}` : 'no history');
      setText(stats.p99.peak, peak(p99Pts, (v) => fmtMs(v)));
      if (st.svc) {
        const svc = st.svc;
        setText(summary, `${svc.passing ?? 0}/${svc.instances ?? 0} instances passing · p50 ${fmtMs(svc.p50_ms)} · ` +
          `mTLS ${fmtPct(svc.mtls)} · ${svc.proxies ?? 0} sidecar(s)` + (svc.unreachable ? `, ${svc.unreachable} unreachable` : ''));
      } else {
        setText(summary, model.stats.has(name)
          ? 'No instances of its own: a virtual service (a route splits its traffic) or a traffic source. Figures are those of its edges.'
          : 'This service is not in the overview.');
      }

      renderSidecars(ov.sidecars.filter((sc) => sc.service === name)
        .sort((a, b) => byName(String(a.name), String(b.name))));

      const callers = model.edges.filter((e) => e.destination === name)
        .map((e) => ({ e, dir: 'in', peer: e.source }));
      const callees = model.edges.filter((e) => e.source === name && e.destination !== name)
        .map((e) => ({ e, dir: 'out', peer: e.destination }));
      const byPeer = (a, b) => byName(a.peer, b.peer);
      syncRows(edgeBody, [...callers.sort(byPeer), ...callees.sort(byPeer)], {
        key: (x) => `${x.e.source}\n${x.e.destination}`,
        cols: 6,
        emptyText: 'No traffic seen to or from this service.',
        create: (x) => {
          const td = Array.from({ length: 5 }, () => h('td'));
          td[0].textContent = x.dir === 'in' ? '← caller' : '→ callee';
          td[1].append(serviceLink(x.peer));
          for (let i = 2; i < 5; i++) td[i].className = 'num';
          const spark = s('svg', { class: 'spark', 'aria-hidden': 'true' });
          const tr = h('tr', { class: 'edge-row', data: { source: x.e.source, destination: x.e.destination } },
            td, h('td', { class: 'spark-cell' }, spark));
          return { tr, td, spark };
        },
        update: (row, x) => {
          const bad = isBad(x.e.success, x.e.rps);
          row.tr.classList.toggle('bad', bad);
          setText(row.td[2], fmtRps(x.e.rps));
          setText(row.td[3], fmtPct(x.e.success));
          row.td[3].classList.toggle('bad-text', bad);
          setText(row.td[4], fmtMs(x.e.p99_ms));
          drawSpark(row.spark, x.e.history, 1, { w: 120, h: 28 });
          row.spark.classList.toggle('bad', bad);
        },
      });
    }

    function renderSidecars(list) {
      const nowS = Date.now() / 1000;
      syncRows(sideBody, list, {
        key: (sc) => String(sc.name),
        cols: 8,
        emptyText: 'No sidecars report for this service.',
        create: (sc) => {
          const td = Array.from({ length: 8 }, () => h('td'));
          td[6].className = 'mono';
          return { tr: h('tr', { data: { sidecar: String(sc.name) } }, td), td };
        },
        update: (row, sc) => {
          const { td } = row;
          const reachable = sc.reachable !== false;
          row.tr.classList.toggle('bad', !reachable);
          setText(td[0], sc.name ?? '');
          setText(td[1], sc.node ?? '');
          setText(td[2], sc.admin ?? '');
          setText(td[3], sc.via ?? '');
          setText(td[4], reachable ? 'reachable' : 'unreachable');
          td[4].className = reachable ? 'ok-text' : 'bad-text';
          setText(td[5], sc.detail ?? '');
          setText(td[6], sc.spiffe_id ?? '');
          const notAfter = num(sc.not_after_unix);
          if (notAfter && notAfter > 0) {
            const left = notAfter - nowS;
            setText(td[7], `${fmtDateTime(notAfter * 1000)} (${left >= 0 ? `in ${fmtHoursMinutes(left)}` : `expired ${fmtHoursMinutes(left)} ago`})`);
            td[7].className = left < 0 ? 'bad-text' : left < 3600 ? 'warn' : '';
            td[7].title = new Date(notAfter * 1000).toISOString();
          } else {
            setText(td[7], '–');
            td[7].className = '';
          }
        },
      });
    }

    function renderInstances(list) {
      const items = list.filter((x) => x && typeof x === 'object');
      syncRows(instBody, items, {
        key: (x) => `${(x.Node && x.Node.Node) || ''}\n${(x.Service && x.Service.ID) || ''}`,
        cols: 5,
        emptyText: 'No instances registered.',
        create: (x) => {
          const td = Array.from({ length: 5 }, () => h('td'));
          const tr = h('tr', { data: { instance: (x.Service && x.Service.ID) || '', node: (x.Node && x.Node.Node) || '' } }, td);
          return { tr, td, sig: null };
        },
        update: (row, x) => {
          const node = x.Node || {}, svc = x.Service || {};
          const checks = Array.isArray(x.Checks) ? x.Checks.filter((c) => c && typeof c === 'object') : [];
          const health = instanceHealth(checks);
          row.tr.dataset.health = health;
          setText(row.td[0], node.Node ?? '');
          setText(row.td[1], `${svc.Address || node.Address || ''}:${svc.Port ?? ''}`);
          setText(row.td[2], svc.ID ?? '');
          // Badges and check lists are rebuilt only when they change.
          const sig = JSON.stringify([health, checks.map((c) => [c.CheckID, c.Name, c.Status, c.Output])]);
          if (sig === row.sig) return;
          row.sig = sig;
          row.td[3].replaceChildren(statusBadge(health));
          row.td[4].replaceChildren(checks.length
            ? h('ul', { class: 'checks' }, checks.map((c) => h('li', { data: { check: String(c.CheckID || c.Name || '') } },
              h('span', { class: 'check-name', text: String(c.Name || c.CheckID || '') }), ' ',
              statusBadge(String(c.Status || 'critical')),
              c.Output ? h('span', { class: 'check-output', title: String(c.Output), text: String(c.Output) }) : null)))
            : h('span', { class: 'muted', text: 'no checks' }));
        },
      });
    }

    function renderConfig(list) {
      const mine = (Array.isArray(list) ? list : []).filter((m) => m && typeof m === 'object' && appliesTo(m, name));
      configList.replaceChildren(...(mine.length
        ? renderManifestGroups(mine)
        : [h('p', { class: 'muted', text: `No manifests apply to ${name}.` })]));
    }
  }

  // ------------------------------------------------------------------ tap --

  function pageTap(ctx, r) {
    const field = (id, label, placeholder, extra) => {
      const input = h('input', { id, name: id, type: 'text', placeholder, autocomplete: 'off', spellcheck: 'false', ...extra });
      return { input, wrap: h('label', { class: 'field', for: id }, h('span', { text: label }), input) };
    };
    const svcField = field('tap-service', 'Service', 'frontend', { list: 'tap-services', required: true });
    const routeField = field('tap-route', 'Route', 'any');
    const methodField = field('tap-method', 'Method', 'any');
    const pathField = field('tap-path', 'Path prefix', 'any');
    const datalist = h('datalist', { id: 'tap-services' });
    const startBtn = h('button', { id: 'tap-start', type: 'submit', class: 'primary', text: 'Start' });
    const stopBtn = h('button', { id: 'tap-stop', type: 'button', text: 'Stop', disabled: true });
    const status = h('div', { id: 'tap-status', class: 'muted', text: 'stopped' });
    const form = h('form', { id: 'tap-form', class: 'tap-form' },
      svcField.wrap, routeField.wrap, methodField.wrap, pathField.wrap, datalist,
      h('div', { class: 'actions' }, startBtn, stopBtn));
    const tbody = h('tbody');
    main.append(
      h('div', { class: 'page-head' }, h('h1', { text: 'Tap' }),
        h('span', { class: 'muted', text: 'Live requests through the sidecars (newest first; headers and bodies are never shown).' })),
      form, status,
      h('div', { class: 'scroll' }, table('tap', ['Time', 'Direction', 'Source', 'Destination', 'Method', 'Path',
        'Status', 'Latency', 'Route', 'Flags', 'Trace'], tbody, 'grid tap')));

    const inputs = { service: svcField.input, route: routeField.input, method: methodField.input, path: pathField.input };
    for (const [k, input] of Object.entries(inputs)) input.value = r.params.get(k) || '';

    let session = null;  // {filter, next, events, dropped, stopped, error, answered}

    function renderStatus() {
      if (!session) { status.textContent = 'stopped'; return; }
      const parts = [session.stopped ? 'stopped' : 'running',
        `service ${session.filter.service || '(any)'}`,
        `${session.events} events`, `dropped ${session.dropped}`];
      if (session.error) parts.push(`error: ${session.error}`);
      status.textContent = parts.join(' · ');
      status.classList.toggle('bad-text', !!session.error);
    }

    function stop() {
      if (session) session.stopped = true;
      startBtn.disabled = false;
      stopBtn.disabled = true;
      renderStatus();
    }

    function start() {
      if (session) session.stopped = true;
      const filter = {};
      for (const [k, input] of Object.entries(inputs)) filter[k] = input.value.trim();
      // The URL keeps the filter (shareable), without re-routing.
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(filter)) if (v) q.set(k, v);
      const hash = `#/tap${q.toString() ? `?${q}` : ''}`;
      if (location.hash !== hash) history.replaceState(null, '', hash);
      tbody.replaceChildren();
      // Its own id: two tabs with the same filter each get every event.
      const id = Array.from(crypto.getRandomValues(new Uint8Array(8)),
        (b) => b.toString(16).padStart(2, '0')).join('');
      session = { id, filter, next: 0, events: 0, dropped: 0, stopped: false, error: '', answered: false };
      startBtn.disabled = false;
      stopBtn.disabled = false;
      renderStatus();
      poll(session).catch(reportBug);
    }

    async function poll(sess) {
      if (!ctx.alive || sess.stopped) return;
      if (dialog.open) { ctx.later(300, () => poll(sess).catch(reportBug)); return; }
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(sess.filter)) if (v) q.set(k, v);
      q.set('since', String(sess.next));
      q.set('session', sess.id);
      const ans = await load(ctx, 'tap', `/v1/ui/tap?${q}`);
      if (!ctx.alive || sess.stopped) return;
      if (ans && typeof ans === 'object') {
        addEvents(sess, Array.isArray(ans.events) ? ans.events : []);
        if (num(ans.next) !== null) sess.next = ans.next;
        sess.dropped += num(ans.dropped) ?? 0;  // (each answer: those since the last)
        sess.error = ans.error ? String(ans.error) : '';
        sess.answered = true;
        ctx.loaded();
      } else {
        sess.error = errors.get('tap') || 'the tap could not be read';
      }
      renderStatus();
      ctx.later(TAP_POLL_MS, () => poll(sess).catch(reportBug));
    }

    function addEvents(sess, events) {
      const list = events.filter((ev) => ev && typeof ev === 'object');
      list.sort((a, b) => (num(a.seq) ?? 0) - (num(b.seq) ?? 0));
      const frag = document.createDocumentFragment();
      for (let i = list.length - 1; i >= 0; i--) frag.append(eventRow(list[i]));  // newest first
      for (const ev of list) if (num(ev.seq) !== null && ev.seq >= sess.next) sess.next = ev.seq + 1;
      tbody.prepend(frag);
      while (tbody.rows.length > TAP_MAX_ROWS) tbody.lastElementChild.remove();
      sess.events += list.length;
    }

    function eventRow(ev) {
      const trace = String(ev.trace_id || '');
      const status = num(ev.status);
      const grpc = num(ev.grpc_status);
      const bad = (status !== null && status >= 500) || (grpc !== null && grpc !== 0);
      const warn = !bad && status !== null && status >= 400;
      const time = num(ev.time_ms);
      const cell = (text, cls) => h('td', { class: cls, text: text ?? '', title: text ? String(text) : null });
      return h('tr', {
        class: `event${bad ? ' bad' : warn ? ' warn' : ''}`,
        data: { traceId: trace, status: status === null ? '' : String(status), path: String(ev.path ?? '') },
      },
      h('td', { class: 'mono', text: time === null ? '' : fmtClock(time, true) }),
      cell(ev.direction),
      cell(ev.source, 'clip'),
      cell(ev.destination, 'clip'),
      cell(ev.method),
      cell(ev.path, 'clip mono'),
      h('td', { class: 'num', text: (status === null ? '' : String(status)) + (grpc !== null ? ` · grpc ${grpc}` : '') }),
      h('td', { class: 'num', text: fmtMs(ev.duration_ms) }),
      cell(ev.route),
      cell(ev.flags),
      h('td', { class: 'mono', title: trace || null, text: trace.length > 12 ? `${trace.slice(0, 12)}…` : trace }));
    }

    form.addEventListener('submit', (ev) => { ev.preventDefault(); start(); });
    stopBtn.addEventListener('click', stop);

    const autostart = !!inputs.service.value;
    // The datalist of service names (the overview's services and edge ends).
    loadOverview(ctx, false).then((ov) => {
      if (!ov) return;
      const names = topologyModel(ov).names;
      datalist.replaceChildren(...names.map((n) => h('option', { value: n })));
      if (!autostart) ctx.loaded();
    }).catch(reportBug);
    if (autostart) start();
  }

  // --------------------------------------------------------------- config --

  // YAML for a JSON value, block style. Strings are double-quoted (JSON
  // escapes are valid YAML) only when a plain scalar would be read back
  // differently or not at all.
  const YAML_WORDS = /^(?:~|null|true|false|yes|no|on|off|y|n|<<)$/i;
  const YAML_NUMBER = /^(?:[-+]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][-+]?\d+)?|0x[\da-f_]+|0o[0-7_]+|0b[01_]+|[-+]?\.(?:inf|nan))$/i;
  const YAML_SEXAGESIMAL = /^[-+]?\d[\d_]*(?::[0-5]?\d)+(?:\.\d*)?$/;   // YAML 1.1 reads 1:30 as 90
  const YAML_DATE = /^\d{4}-\d\d?-\d\d?(?:[Tt ]|$)/;

  function yamlString(str) {
    const quote =
      str === '' ||
      /^\s|\s$/.test(str) ||
      /^[-?:,[\]{}#&*!|>'"%@`]/.test(str) ||                 // starts with an indicator
      /: |:$| #|\t|[\x00-\x1f\x7f\u0085\u2028\u2029\ufeff]/.test(str) ||
      YAML_WORDS.test(str) || YAML_NUMBER.test(str) || YAML_SEXAGESIMAL.test(str) || YAML_DATE.test(str);
    return quote ? JSON.stringify(str) : str;
  }

  const isObject = (v) => v !== null && typeof v === 'object';
  // Scalars and empty containers go on their key's line.
  const isInline = (v) => !isObject(v) || (Array.isArray(v) ? v.length === 0 : Object.keys(v).length === 0);

  function yamlInline(v) {
    if (Array.isArray(v)) return '[]';
    if (isObject(v)) return '{}';
    if (v === null || v === undefined) return 'null';
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) return 'null';
      // 1e+21 -> 1.0e+21: YAML 1.1 readers want a dot in a float.
      return String(v).replace(/^(-?\d+)e/, '$1.0e');
    }
    if (typeof v === 'boolean') return String(v);
    return yamlString(String(v));
  }

  function yamlLines(v, indent) {
    const sp = ' '.repeat(indent);
    if (isInline(v)) return [sp + yamlInline(v)];
    const lines = [];
    if (Array.isArray(v)) {
      for (const item of v) {
        if (isInline(item)) { lines.push(`${sp}- ${yamlInline(item)}`); continue; }
        // "- " then the item's first line; the rest stays indented under it.
        const sub = yamlLines(item, indent + 2);
        sub[0] = `${sp}- ${sub[0].slice(indent + 2)}`;
        lines.push(...sub);
      }
      return lines;
    }
    for (const [k, item] of Object.entries(v)) {
      if (isInline(item)) lines.push(`${sp}${yamlString(k)}: ${yamlInline(item)}`);
      else lines.push(`${sp}${yamlString(k)}:`, ...yamlLines(item, indent + 2));
    }
    return lines;
  }

  function toYaml(value) {
    return yamlLines(value, 0).join('\n');
  }

  // A manifest as written: kind, metadata, spec first; the store's indexes left out.
  function manifestYaml(m) {
    const clean = {};
    for (const k of ['kind', 'metadata', 'spec']) if (k in m) clean[k] = m[k];
    for (const [k, v] of Object.entries(m)) {
      if (!(k in clean) && k !== 'CreateIndex' && k !== 'ModifyIndex') clean[k] = v;
    }
    return toYaml(clean);
  }

  // Manifests grouped by kind (known kinds first), each sorted by namespace/name.
  function renderManifestGroups(list) {
    const meta = (m) => (isObject(m.metadata) ? m.metadata : {});
    const groups = new Map();
    for (const m of list) {
      const kind = String(m.kind || '(no kind)');
      if (!groups.has(kind)) groups.set(kind, []);
      groups.get(kind).push(m);
    }
    const rank = (k) => { const i = KIND_ORDER.indexOf(k); return i < 0 ? KIND_ORDER.length : i; };
    const kinds = [...groups.keys()].sort((a, b) => rank(a) - rank(b) || byName(a, b));
    return kinds.map((kind) => {
      const items = groups.get(kind).sort((a, b) =>
        byName(String(meta(a).namespace || ''), String(meta(b).namespace || '')) ||
        byName(String(meta(a).name || ''), String(meta(b).name || '')));
      return h('section', { class: 'kind-group', data: { kind } },
        h('h3', null, kind, h('span', { class: 'muted', text: ` (${items.length})` })),
        items.map((m) => {
          const ns = String(meta(m).namespace || 'default');
          const name = String(meta(m).name || '');
          return h('article', { class: 'manifest-card' },
            h('div', { class: 'manifest-head' },
              h('strong', { text: `${ns}/${name}` }),
              num(m.ModifyIndex) !== null ? h('span', { class: 'muted', text: `index ${m.ModifyIndex}` }) : null),
            h('pre', { class: 'manifest', data: { kind, name, namespace: ns }, text: manifestYaml(m) }));
        }));
    });
  }

  function pageConfig(ctx) {
    const listBox = h('div', { id: 'config-list', class: 'manifests' }, h('p', { class: 'muted', text: 'Loading…' }));
    main.append(
      h('div', { class: 'page-head' }, h('h1', { text: 'Configuration' }),
        h('span', { class: 'muted', text: 'Manifests in the store, as `weft apply -f` takes them.' })),
      listBox);
    let last = null;
    ctx.every(CONFIG_REFRESH_MS, async () => {
      const list = await load(ctx, 'config', '/v1/config');
      if (!list) return;
      if (!Array.isArray(list)) {
        setError('config', 'GET /v1/config: unexpected answer (not a list)');
        return;
      }
      const text = JSON.stringify(list);
      if (text !== last) {
        last = text;
        const manifests = list.filter(isObject);
        listBox.replaceChildren(...(manifests.length ? renderManifestGroups(manifests)
          : [h('p', { class: 'muted', text: 'No manifests (or none this token may read).' })]));
      }
      ctx.loaded();
    });
  }

  // ------------------------------------------------------------- not found --

  function pageNotFound(ctx) {
    main.append(h('h1', { text: 'Not found' }),
      h('p', null, 'No such page. ', h('a', { href: '#/topology', text: 'Back to the topology' }), '.'));
    ctx.loaded();
  }

  const PAGES = {
    topology: pageTopology,
    services: pageServices,
    service: (ctx, r) => pageService(ctx, r.name),
    tap: pageTap,
    config: pageConfig,
    notfound: pageNotFound,
  };

  // ------------------------------------------------------------------ boot --

  updateTokenButton();
  window.addEventListener('hashchange', route);
  route();
})();
