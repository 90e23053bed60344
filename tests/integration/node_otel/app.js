#!/usr/bin/env node
'use strict';
/*
 * weft's instrumented test application for the tracing interop tests: an
 * HTTP service (and a client) traced with the OpenTelemetry JS SDK, so that
 * the tests can put `weft proxy` between services that propagate W3C trace
 * context (traceparent/tracestate) and export their spans over OTLP/HTTP
 * (protobuf) to collector.js, and check that weft's own spans fit into the
 * same traces.
 *
 * Tracing setup: NodeTracerProvider, the W3C trace-context propagator as
 * the global propagator, OTLPTraceExporter (protobuf) to COLLECTOR/v1/traces
 * behind a SimpleSpanProcessor (each span is exported as soon as it ends),
 * resource service.name = --name. Spans are made by hand with
 * @opentelemetry/api, the way an HTTP instrumentation would make them.
 *
 * Server mode:
 *   node app.js --name NAME --port PORT --collector http://127.0.0.1:CPORT
 *               [--next http://HOST:PORT/path]... [--sampled parent|1|0]
 *     Serves HTTP on 127.0.0.1:PORT (0 picks one) and prints
 *     `listening <port>` on stdout. Every request gets a SERVER span named
 *     `METHOD PATH` (parent: the context extracted from its headers;
 *     attributes http.request.method, url.path, http.response.status_code).
 *     Then, in order, one GET per --next URL, each under a CLIENT span
 *     (child of the server span) whose context is injected into the
 *     outgoing traceparent/tracestate. The answer is 200 with JSON
 *       {service, traceparent, tracestate, span: {traceId, spanId, sampled},
 *        calls: [the JSON body of each --next call, or {error, status}]}
 *     traceparent/tracestate: the headers as received (null when absent);
 *     span: this service's server span. A --next call that fails (no
 *     connection, a timeout, a status other than 2xx) makes the answer 502.
 *     The path /fail answers 500 at once, its span's status ERROR.
 *     Sampler (--sampled): parent (default) follows the sampled flag of the
 *     incoming traceparent and samples requests without one; 1 samples
 *     everything; 0 nothing (traceparent is still propagated, flags 00).
 *
 * Client mode:
 *   node app.js --name NAME --collector URL --client URL --count N
 *               [--concurrency C] [--sampled 1|0|parent]
 *     Makes N GETs to URL, C at a time (default 1), each under a root CLIENT
 *     span with traceparent (and tracestate, when the span has one) injected.
 *     --sampled 1 (default) samples every request (flags 01); 0 uses an
 *     always-off sampler (flags 00); parent is the SDK's default, parent
 *     based with always-on for roots (so, for these root spans, as 1).
 *     Prints one JSON line per request
 *       {traceId, spanId, sampled, status, ms, body}  (status 0: no answer,
 *                                                       with `error`)
 *     and at the end {done: true, ok, failed} (ok: 2xx answers; failed:
 *     the others, no answer included). Exit status 0 once all N are done,
 *     whatever their outcome; 2 for bad arguments, 1 for a crash.
 *     The provider is flushed and shut down before exit, so every span has
 *     been exported (or given up on) when the process ends.
 *
 * Diagnostics (exporter failures included) go to stderr.
 */
const http = require('http');

const api = require('@opentelemetry/api');
const { W3CTraceContextPropagator } = require('@opentelemetry/core');
const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');
const {
  SimpleSpanProcessor,
  AlwaysOnSampler,
  AlwaysOffSampler,
  ParentBasedSampler,
} = require('@opentelemetry/sdk-trace-base');
const { Resource } = require('@opentelemetry/resources');
const { SEMRESATTRS_SERVICE_NAME } = require('@opentelemetry/semantic-conventions');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');

const { SpanKind, SpanStatusCode, context, propagation, trace } = api;

// HTTP semantic-convention attribute names (written out: this version of
// @opentelemetry/semantic-conventions has no constants for them yet).
const HTTP_METHOD = 'http.request.method';
const HTTP_STATUS = 'http.response.status_code';
const URL_PATH = 'url.path';
const URL_FULL = 'url.full';
const SERVER_ADDRESS = 'server.address';
const SERVER_PORT = 'server.port';
const ERROR_TYPE = 'error.type';

const NEXT_TIMEOUT_MS = 10000;

// ------------------------------------------------------------ options --

function parseArgs(argv) {
  const opts = { name: '', port: null, collector: '', next: [], client: '', count: 1, concurrency: 1, sampled: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--name': opts.name = value(); break;
      case '--port': opts.port = toInt(value(), a); break;
      case '--collector': opts.collector = value(); break;
      case '--next': opts.next.push(value()); break;
      case '--client': opts.client = value(); break;
      case '--count': opts.count = toInt(value(), a); break;
      case '--concurrency': opts.concurrency = Math.max(1, toInt(value(), a)); break;
      case '--sampled': opts.sampled = value(); break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!opts.name) throw new Error('--name is required');
  if (!opts.collector) throw new Error('--collector is required');
  if (!opts.client && opts.port === null) throw new Error('--port (server mode) or --client URL (client mode) is required');
  if (opts.sampled === null) opts.sampled = opts.client ? '1' : 'parent';
  if (!['0', '1', 'parent'].includes(opts.sampled)) throw new Error(`--sampled must be 0, 1 or parent, not ${opts.sampled}`);
  return opts;
}

function toInt(text, what) {
  if (!/^\d+$/.test(String(text))) throw new Error(`${what}: not a number: ${text}`);
  return Number(text);
}

// ------------------------------------------------------------ tracing --

/*
 * Sets up the SDK and registers it globally (tracer provider, context
 * manager, W3C propagator). Returns the provider, to flush at exit.
 */
function setupTracing(opts) {
  api.diag.setLogger(new api.DiagConsoleLogger(), api.DiagLogLevel.WARN);
  const sampler = opts.sampled === '1' ? new AlwaysOnSampler()
    : opts.sampled === '0' ? new AlwaysOffSampler()
      : new ParentBasedSampler({ root: new AlwaysOnSampler() });
  const provider = new NodeTracerProvider({
    resource: new Resource({ [SEMRESATTRS_SERVICE_NAME]: opts.name }),
    sampler,
  });
  const exporter = new OTLPTraceExporter({ url: opts.collector.replace(/\/+$/, '') + '/v1/traces' });
  provider.addSpanProcessor(new SimpleSpanProcessor(exporter));
  provider.register({ propagator: new W3CTraceContextPropagator() });
  return provider;
}

// Flushes every pending export and shuts the provider down (bounded, so a
// dead collector cannot keep the process alive for long).
async function shutdownTracing(provider) {
  const bounded = (p) => Promise.race([p, new Promise((r) => setTimeout(r, 15000))]);
  try {
    await bounded(provider.forceFlush());
    await bounded(provider.shutdown());
  } catch (e) {
    process.stderr.write(`app: tracing shutdown: ${e.message || e}\n`);
  }
}

function spanInfo(span) {
  const sc = span.spanContext();
  return {
    traceId: sc.traceId,
    spanId: sc.spanId,
    sampled: (sc.traceFlags & api.TraceFlags.SAMPLED) !== 0,
  };
}

// ------------------------------------------------------- outgoing GET --

/*
 * One GET to `url` under a new CLIENT span (a child of the active context),
 * with traceparent/tracestate injected from that span's context. Resolves
 * {status, body (parsed JSON when it is JSON, else text), span} or, when no
 * answer came, {status: 0, error, span}. The span records the status and is
 * ERROR for no answer or a status of 400 or more.
 */
function tracedGet(tracer, url) {
  const u = new URL(url);
  const span = tracer.startSpan('GET', {
    kind: SpanKind.CLIENT,
    attributes: {
      [HTTP_METHOD]: 'GET',
      [URL_FULL]: url,
      [SERVER_ADDRESS]: u.hostname,
      [SERVER_PORT]: Number(u.port || 80),
    },
  });
  const ctx = trace.setSpan(context.active(), span);
  const headers = {};
  propagation.inject(ctx, headers);
  const info = spanInfo(span);

  return new Promise((resolve) => {
    let settled = false;
    const finish = (result) => {
      if (settled) return;
      settled = true;
      if (result.status) span.setAttribute(HTTP_STATUS, result.status);
      if (!result.status || result.status >= 400) {
        span.setAttribute(ERROR_TYPE, result.status ? String(result.status) : 'connect');
        span.setStatus({ code: SpanStatusCode.ERROR, message: result.error || `status ${result.status}` });
      }
      span.end();
      resolve({ ...result, span: info });
    };
    const req = http.get(url, { headers, timeout: NEXT_TIMEOUT_MS }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body = text;
        try {
          body = JSON.parse(text);
        } catch (_) {
          // not JSON: keep the text
        }
        finish({ status: res.statusCode, body });
      });
      res.on('error', (e) => finish({ status: 0, error: e.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${NEXT_TIMEOUT_MS} ms`)));
    req.on('error', (e) => finish({ status: 0, error: e.message }));
  });
}

// --------------------------------------------------------- server mode --

function sendJson(res, status, value) {
  const buf = Buffer.from(JSON.stringify(value));
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': buf.length });
  res.end(buf);
}

async function handleRequest(tracer, opts, req, res) {
  const path = req.url.split('?')[0];
  // The caller's trace context (or none: ROOT_CONTEXT stays as it is).
  const parent = propagation.extract(api.ROOT_CONTEXT, req.headers);
  const span = tracer.startSpan(`${req.method} ${path}`, {
    kind: SpanKind.SERVER,
    attributes: { [HTTP_METHOD]: req.method, [URL_PATH]: path },
  }, parent);
  const answer = {
    service: opts.name,
    traceparent: req.headers.traceparent === undefined ? null : req.headers.traceparent,
    tracestate: req.headers.tracestate === undefined ? null : req.headers.tracestate,
    span: spanInfo(span),
    calls: [],
  };
  let status = 200;
  req.resume(); // bodies are not used

  if (path === '/fail') {
    status = 500;
    answer.error = 'failed on request (/fail)';
  } else {
    // The --next calls run inside the server span's context, so their
    // client spans are its children.
    await context.with(trace.setSpan(parent, span), async () => {
      for (const url of opts.next) {
        const r = await tracedGet(tracer, url);
        if (r.status >= 200 && r.status < 300) {
          answer.calls.push(r.body);
        } else {
          status = 502;
          answer.calls.push({ error: r.error || `status ${r.status}`, status: r.status, body: r.body });
        }
      }
    });
  }

  span.setAttribute(HTTP_STATUS, status);
  if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: answer.error || `status ${status}` });
  sendJson(res, status, answer);
  span.end();
}

function serve(opts, provider) {
  const tracer = api.trace.getTracer('weft-test-app');
  const server = http.createServer((req, res) => {
    handleRequest(tracer, opts, req, res).catch((e) => {
      process.stderr.write(`app ${opts.name}: ${e.stack || e}\n`);
      if (!res.headersSent) sendJson(res, 500, { service: opts.name, error: String(e) });
    });
  });
  // Idle keep-alive connections stay open a minute (node's default is 5 s),
  // so a proxy reusing its upstream connection does not race the close.
  server.keepAliveTimeout = 60000;
  server.headersTimeout = 65000;
  server.on('error', (e) => {
    process.stderr.write(`app ${opts.name}: ${e.message}\n`);
    process.exit(1);
  });
  server.listen(opts.port, '127.0.0.1', () => {
    process.stdout.write(`listening ${server.address().port}\n`);
  });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    server.close();
    await shutdownTracing(provider);
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// --------------------------------------------------------- client mode --

async function runClient(opts, provider) {
  const tracer = api.trace.getTracer('weft-test-client');
  let next = 0;
  let ok = 0;
  let failed = 0;

  async function one() {
    const started = process.hrtime.bigint();
    // A root span: no parent, whatever the active context holds.
    const r = await context.with(api.ROOT_CONTEXT, () => tracedGet(tracer, opts.client));
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    if (r.status >= 200 && r.status < 300) ok++;
    else failed++;
    const line = { traceId: r.span.traceId, spanId: r.span.spanId, sampled: r.span.sampled, status: r.status, ms: Math.round(ms * 1000) / 1000, body: r.body };
    if (r.error) line.error = r.error;
    process.stdout.write(JSON.stringify(line) + '\n');
  }

  async function worker() {
    while (next < opts.count) {
      next++;
      await one();
    }
  }

  const workers = [];
  for (let i = 0; i < Math.min(opts.concurrency, opts.count); i++) workers.push(worker());
  await Promise.all(workers);
  await shutdownTracing(provider);
  process.stdout.write(JSON.stringify({ done: true, ok, failed }) + '\n');
  return 0;
}

// ---------------------------------------------------------------- main --

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`app: ${e.message}\n`);
    process.exit(2);
  }
  const provider = setupTracing(opts);
  if (opts.client) {
    runClient(opts, provider).then((code) => process.exit(code), (e) => {
      process.stderr.write(`app ${opts.name}: ${e.stack || e}\n`);
      process.exit(1);
    });
  } else {
    serve(opts, provider);
  }
}

main();
