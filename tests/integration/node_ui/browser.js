#!/usr/bin/env node
'use strict';
// A long-running headless browser driver for weft's UI tests: it launches the
// system's Chromium (puppeteer-core over the DevTools protocol; no browser is
// ever downloaded) with one page of 1400x900, then reads one JSON command per
// line on stdin and answers each with one JSON line on stdout, in order:
//
//   {"ok":true,"value":...}   or   {"ok":false,"error":"..."}
//
// A command's "id", when it has one, is echoed in its answer. Once Chromium is
// up it prints {"ok":true,"value":"ready","version":...,"ms":...,"pid":...}
// (ms: the launch's duration; pid: Chromium's main process); when the
// launch fails, {"ok":false,"error":...} and it exits 1. Nothing else is ever
// written to stdout (diagnostics go to stderr).
//
// Commands (every one takes an optional "timeout_ms", default 30000, after
// which it answers ok:false; a failing command never ends the driver):
//
//   {"cmd":"goto","url":U,"wait_until":"load"}   -> {"ms","status","url"}
//        wait_until: load | domcontentloaded | networkidle0 | networkidle2
//   {"cmd":"wait","selector":S,"timeout_ms":T,"visible":false} -> ms waited
//   {"cmd":"eval","js":E}       -> E's value, JSON-serialised. E is run in
//        the page's main frame as a REPL would run it: an expression, or
//        statements (the last one's value), top-level `await` allowed, and a
//        Promise result awaited. A thrown exception answers ok:false with its
//        text. On timeout the script is terminated.
//   {"cmd":"screenshot","path":P,"full_page":true} -> {"path","bytes","ms"}
//   {"cmd":"type","selector":S,"text":X,"clear":false,"delay_ms":0}
//   {"cmd":"click","selector":S}
//   {"cmd":"console"}           -> [{"type","text","url"}, ...] collected
//        since launch (or the last "console"), which it then clears. type:
//        "error", "warning" (console messages, including Chromium's own
//        "Failed to load resource" ones), "pageerror" (uncaught exceptions
//        and unhandled rejections), "requestfailed" (text: the net error),
//        "response" (an HTTP status >= 400; text: "404 Not Found"), "crash"
//   {"cmd":"set_local_storage","key":K,"value":V}  in the current page's
//        origin (V not a string: stored as its JSON)
//   {"cmd":"open_pages","url":U,"n":N,"wait_until":"load","visible":false} -> {"ms","pages"}
//        opens N more pages (tabs, 1400x900, N from 1 to 50) one after another,
//        with "visible": true each behaving as if on screen (document.hidden
//        false, visibilityState "visible": a background tab is hidden),
//        each navigated to U; "pages": how many extra pages are open now. The
//        commands above keep acting on the first page; what the extra pages
//        log is collected for "console" like the first page's.
//   {"cmd":"eval_pages","js":E} -> [E's value in each extra page, in the
//        order they were opened] (page.evaluate of the expression E; a
//        Promise is awaited; values come back as JSON)
//   {"cmd":"close_pages"}       -> {"closed","ms"} closes every extra page
//   {"cmd":"quit"}              closes Chromium and exits 0 (so does EOF on
//        stdin, and SIGTERM)
//
// Environment: CHROMIUM (the browser executable; default /usr/bin/chromium);
// UI_PROFILE_DIR (Chromium's profile directory, which the caller creates and
// removes; by default a temporary one this driver removes when it exits).
// JavaScript dialogs (alert, confirm, prompt, beforeunload) are dismissed so
// they never block a command.

const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');

let puppeteer;
try {
  puppeteer = require('puppeteer-core');
} catch (e) {
  process.stdout.write(JSON.stringify({
    ok: false,
    error: `puppeteer-core is not installed (run tests/integration/node_ui/install.sh): ${e.message}`,
  }) + '\n');
  process.exit(1);
}

const EXECUTABLE = process.env.CHROMIUM || '/usr/bin/chromium';
const WIDTH = 1400;
const HEIGHT = 900;
const DEFAULT_TIMEOUT_MS = 30000;

let browser = null;
let page = null;
let cdp = null;            // a CDP session of the page, for Runtime.evaluate
let disconnected = false;  // Chromium went away without a quit
let quitting = false;
let ownProfile = null;     // the profile directory to remove at exit
const collected = [];      // what "console" reports
const extraPages = [];     // opened by "open_pages", closed by "close_pages"

function log(...args) {
  process.stderr.write(`browser.js: ${args.join(' ')}\n`);
}

function send(obj) {
  let line;
  try {
    line = JSON.stringify(obj);
  } catch (e) {
    line = JSON.stringify({ok: false, id: obj.id, error: `answer is not JSON-serialisable: ${e.message}`});
  }
  process.stdout.write(line + '\n');
}

function errText(e) {
  if (e instanceof Error) {
    // puppeteer wraps the reason (a timeout, say) in the error's cause.
    let text = e.message || String(e);
    for (let c = e.cause, n = 0; c && n < 3; c = c.cause, n++) {
      const m = c instanceof Error ? c.message : String(c);
      if (m && !text.includes(m)) text += `: ${m}`;
    }
    return text;
  }
  if (typeof e === 'string') return e;
  try { return JSON.stringify(e); } catch (_) { return String(e); }
}

function record(type, text, url) {
  collected.push({type, text: String(text ?? ''), url: String(url ?? '')});
}

function withTimeout(promise, ms, what, onTimeout) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      if (onTimeout) {
        try { onTimeout(); } catch (_) { /* best effort */ }
      }
      reject(new Error(`${what} timed out after ${ms} ms`));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function need(cmd, field, type = 'string') {
  const v = cmd[field];
  if (typeof v !== type || (type === 'string' && v === '')) {
    throw new Error(`"${cmd.cmd}" needs "${field}" (a ${type})`);
  }
  return v;
}

// ---------------------------------------------------------------- launch --

function watchPage(p) {
  p.on('console', (msg) => {
    const t = msg.type();
    if (t !== 'error' && t !== 'warn' && t !== 'warning') return;
    let url = '';
    try { url = (msg.location() || {}).url || p.url(); } catch (_) { /* none */ }
    record(t === 'error' ? 'error' : 'warning', msg.text(), url);
  });
  p.on('pageerror', (err) => {
    // An Error's message (its stack when there is one), or whatever was thrown.
    const text = err instanceof Error ? (err.stack || err.message) : errText(err);
    let url = '';
    try { url = p.url(); } catch (_) { /* none */ }
    record('pageerror', text, url);
  });
  p.on('requestfailed', (req) => {
    const f = req.failure();
    record('requestfailed', f ? f.errorText : 'failed', req.url());
  });
  p.on('response', (resp) => {
    const status = resp.status();
    if (status >= 400) record('response', `${status} ${resp.statusText()}`.trim(), resp.url());
  });
  p.on('error', (err) => {  // the page's renderer crashed
    record('crash', errText(err), p.url());
    log('page crashed:', errText(err));
  });
  p.on('dialog', (dialog) => {
    log(`dismissing ${dialog.type()} dialog: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
}

async function launch() {
  if (!fs.existsSync(EXECUTABLE)) {
    throw new Error(`Chromium not found at ${EXECUTABLE} (Debian: chromium; run scripts/deps.sh, or set CHROMIUM)`);
  }
  let userDataDir = process.env.UI_PROFILE_DIR;
  if (!userDataDir) {
    userDataDir = ownProfile = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-ui-profile-'));
  }
  browser = await puppeteer.launch({
    executablePath: EXECUTABLE,
    userDataDir,
    headless: true,  // puppeteer passes --headless=new (Chromium's only headless mode since 132)
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      `--window-size=${WIDTH},${HEIGHT}`,
      '--no-first-run',
      '--no-default-browser-check',
      '--disable-extensions',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--metrics-recording-only',
      '--password-store=basic',
      '--use-mock-keychain',
    ],
    defaultViewport: {width: WIDTH, height: HEIGHT},
    timeout: 60000,
    protocolTimeout: 120000,
    // The DevTools protocol over a pipe: no port, and Chromium exits when this
    // process dies, however it dies (the pipe closes).
    pipe: true,
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  browser.on('disconnected', () => {
    if (quitting) return;
    disconnected = true;
    record('crash', 'Chromium disconnected', '');
    log('Chromium disconnected');
  });
  const pages = await browser.pages();
  page = pages.length ? pages[0] : await browser.newPage();
  watchPage(page);
  page.setDefaultTimeout(DEFAULT_TIMEOUT_MS);
  page.setDefaultNavigationTimeout(DEFAULT_TIMEOUT_MS);
  cdp = await page.createCDPSession();
  return browser.version();
}

// -------------------------------------------------------------- commands --

function exceptionText(d) {
  // The thrown value: an Error's stack, or the value itself.
  const ex = d.exception || {};
  if (ex.description) return ex.description;
  if (ex.value !== undefined) return errText(ex.value);
  if (ex.unserializableValue !== undefined) return ex.unserializableValue;
  if (ex.type === 'undefined') return 'undefined';
  return d.text || 'exception';
}

let evalCount = 0;

async function evaluateUnbounded(js) {
  // Its own group: an earlier eval that timed out releases only its own.
  const objectGroup = `weft-eval-${++evalCount}`;
  try {
    // replMode: an expression, statements (the last one's value) or
    // top-level await, as the DevTools console runs them.
    const r = await cdp.send('Runtime.evaluate', {
      expression: js,
      replMode: true,
      awaitPromise: true,
      returnByValue: false,
      userGesture: true,
      objectGroup,
    });
    if (r.exceptionDetails) throw new Error(`eval threw: ${exceptionText(r.exceptionDetails)}`);
    let res = r.result || {};
    if (res.objectId) {
      // An object: a Promise is awaited, then the value comes back as JSON.
      const r2 = res.subtype === 'promise'
        ? await cdp.send('Runtime.awaitPromise', {promiseObjectId: res.objectId, returnByValue: true})
        : await cdp.send('Runtime.callFunctionOn', {
          functionDeclaration: 'function () { return this; }',
          objectId: res.objectId,
          returnByValue: true,
        });
      if (r2.exceptionDetails) throw new Error(`eval threw: ${exceptionText(r2.exceptionDetails)}`);
      res = r2.result || {};
    }
    if (res.unserializableValue !== undefined) return res.unserializableValue;  // NaN, Infinity, -0, 1n
    if (res.type === 'undefined') return null;
    return res.value === undefined ? null : res.value;
  } finally {
    cdp.send('Runtime.releaseObjectGroup', {objectGroup}).catch(() => {});
  }
}

async function evaluate(js, timeoutMs) {
  // On timeout a running script (a busy loop, say) is terminated.
  return withTimeout(evaluateUnbounded(js), timeoutMs, 'eval', () => {
    cdp.send('Runtime.terminateExecution').catch(() => {});
  });
}

const COMMANDS = {
  async goto(cmd, t) {
    const url = need(cmd, 'url');
    const waitUntil = cmd.wait_until || 'load';
    const t0 = Date.now();
    const resp = await page.goto(url, {waitUntil, timeout: t});
    return {ms: Date.now() - t0, status: resp ? resp.status() : null, url: page.url()};
  },

  async wait(cmd, t) {
    const selector = need(cmd, 'selector');
    const t0 = Date.now();
    await page.waitForSelector(selector, {timeout: t, visible: !!cmd.visible});
    return Date.now() - t0;
  },

  async eval(cmd, t) {
    return evaluate(need(cmd, 'js'), t);
  },

  async screenshot(cmd, t) {
    const p = path.resolve(need(cmd, 'path'));
    fs.mkdirSync(path.dirname(p), {recursive: true});
    const t0 = Date.now();
    await withTimeout(page.screenshot({path: p, fullPage: cmd.full_page !== false}), t, 'screenshot');
    return {path: p, bytes: fs.statSync(p).size, ms: Date.now() - t0};
  },

  async type(cmd, t) {
    const selector = need(cmd, 'selector');
    if (typeof cmd.text !== 'string') throw new Error('"type" needs "text" (a string)');
    const el = await page.waitForSelector(selector, {timeout: t});
    if (cmd.clear) {
      await el.evaluate((e) => {
        if ('value' in e) e.value = '';
        else e.textContent = '';
        e.dispatchEvent(new Event('input', {bubbles: true}));
      });
    }
    await el.type(cmd.text, {delay: Number(cmd.delay_ms) || 0});
    await el.dispose();
    return null;
  },

  async click(cmd, t) {
    const selector = need(cmd, 'selector');
    const el = await page.waitForSelector(selector, {timeout: t});
    await el.click();
    await el.dispose();
    return null;
  },

  async console() {
    return collected.splice(0, collected.length);
  },

  async open_pages(cmd, t) {
    const url = need(cmd, 'url');
    const n = cmd.n;
    if (!Number.isInteger(n) || n < 1 || n > 50) {
      throw new Error('"open_pages" needs "n" (an integer from 1 to 50)');
    }
    const waitUntil = cmd.wait_until || 'load';
    const t0 = Date.now();
    for (let i = 0; i < n; i++) {
      const left = t - (Date.now() - t0);
      if (left <= 0) throw new Error(`open_pages timed out after ${t} ms (${i} of ${n} opened)`);
      const p = await withTimeout(browser.newPage(), left, 'newPage');
      extraPages.push(p);
      watchPage(p);
      p.setDefaultTimeout(DEFAULT_TIMEOUT_MS);
      p.setDefaultNavigationTimeout(DEFAULT_TIMEOUT_MS);
      if (cmd.visible) {
        await p.evaluateOnNewDocument(() => {
          Object.defineProperty(document, 'hidden', {get: () => false});
          Object.defineProperty(document, 'visibilityState', {get: () => 'visible'});
        });
      }
      await p.goto(url, {waitUntil, timeout: Math.max(1, t - (Date.now() - t0))});
    }
    return {ms: Date.now() - t0, pages: extraPages.length};
  },

  async eval_pages(cmd, t) {
    const js = need(cmd, 'js');
    return withTimeout(Promise.all(extraPages.map((p) => p.evaluate(js))), t, 'eval_pages');
  },

  async close_pages(cmd, t) {
    const t0 = Date.now();
    const pages = extraPages.splice(0, extraPages.length);
    await withTimeout(Promise.all(pages.map((p) => p.close().catch((e) => {
      log('closing a page failed:', errText(e));
    }))), t, 'close_pages');
    return {closed: pages.length, ms: Date.now() - t0};
  },

  async set_local_storage(cmd, t) {
    const key = need(cmd, 'key');
    if (!('value' in cmd)) throw new Error('"set_local_storage" needs "value"');
    const value = typeof cmd.value === 'string' ? cmd.value : JSON.stringify(cmd.value);
    await withTimeout(page.evaluate((k, v) => {
      window.localStorage.setItem(k, v);
    }, key, value), t, 'set_local_storage');
    return null;
  },
};

async function shutdown(code) {
  quitting = true;
  if (browser) {
    try {
      await withTimeout(browser.close(), 10000, 'browser.close');
    } catch (e) {
      log('close failed:', errText(e));
      try { browser.process() && browser.process().kill('SIGKILL'); } catch (_) { /* gone */ }
    }
  }
  if (ownProfile) {
    try { fs.rmSync(ownProfile, {recursive: true, force: true}); } catch (_) { /* best effort */ }
  }
  process.exit(code);
}

async function handle(line) {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    send({ok: false, error: `not a JSON command: ${errText(e)}`});
    return;
  }
  if (cmd === null || typeof cmd !== 'object' || Array.isArray(cmd)) {
    send({ok: false, error: 'a command is a JSON object'});
    return;
  }
  const id = cmd.id;
  const reply = (obj) => send(id === undefined ? obj : {...obj, id});
  if (cmd.cmd === 'quit') {
    reply({ok: true, value: null});
    await shutdown(0);
    return;
  }
  const fn = Object.prototype.hasOwnProperty.call(COMMANDS, cmd.cmd) ? COMMANDS[cmd.cmd] : null;
  if (!fn) {
    reply({ok: false, error: `unknown command: ${JSON.stringify(cmd.cmd)}`});
    return;
  }
  if (disconnected && cmd.cmd !== 'console') {
    reply({ok: false, error: 'Chromium has disconnected (crashed or was killed)'});
    return;
  }
  let t = Number(cmd.timeout_ms);
  if (!Number.isFinite(t) || t <= 0) t = DEFAULT_TIMEOUT_MS;
  try {
    // The outer limit (a little over t) answers even if a command's own
    // timeout does not fire.
    const value = await withTimeout(fn(cmd, t), t + 2000, cmd.cmd);
    reply({ok: true, value: value === undefined ? null : value});
  } catch (e) {
    reply({ok: false, error: errText(e)});
  }
}

// ------------------------------------------------------------------ main --

process.on('unhandledRejection', (e) => log('unhandled rejection:', errText(e)));
process.on('uncaughtException', (e) => log('uncaught exception:', e && e.stack ? e.stack : errText(e)));
process.on('SIGTERM', () => { shutdown(0); });
process.on('SIGINT', () => { shutdown(0); });
process.stdout.on('error', () => { shutdown(0); });  // the reader went away

async function main() {
  const t0 = Date.now();
  let version;
  try {
    version = await launch();
  } catch (e) {
    send({ok: false, error: `launching ${EXECUTABLE} failed: ${errText(e)}`});
    await shutdown(1);
    return;
  }
  let pid = null;
  try { pid = browser.process() ? browser.process().pid : null; } catch (_) { /* unknown */ }
  send({ok: true, value: 'ready', version, ms: Date.now() - t0, pid});

  // Commands run one at a time, in the order they came.
  let chain = Promise.resolve();
  const rl = readline.createInterface({input: process.stdin, crlfDelay: Infinity, terminal: false});
  rl.on('line', (line) => {
    if (!line.trim()) return;
    chain = chain.then(() => handle(line)).catch((e) => log('command failed:', errText(e)));
  });
  rl.on('close', () => {
    chain.then(() => shutdown(0));
  });
}

main();
