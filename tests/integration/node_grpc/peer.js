#!/usr/bin/env node
'use strict';
/*
 * weft's gRPC test peer on grpc-js: the same server and client as
 * ../grpc_peer.py (python3-grpcio), so the integration tests can put a
 * second, independent HTTP/2 stack on either side of `weft proxy`.
 *
 * No .proto and no protobuf: the service definition below is written by
 * hand and every message is a raw Buffer (identity serializers).
 *
 * Service weft.test.Echo (NAME is --name):
 *   Unary         `NAME:` + request
 *   ServerStream  request `N` or `N,SIZE`: N messages `NAME:i`, padded with
 *                 '.' to SIZE bytes
 *   ClientStream  `NAME:count=<n>,bytes=<total>`
 *   Bidi          `NAME:` + each message, as it arrives (ping-pong works)
 *
 * Request metadata that steers the server, and the initial metadata it
 * sends back (x-seen-timeout, x-seen-authority, x-seen-xfcc, x-seen-peer,
 * x-served-by, x-echo-*), are the same as grpc_peer.py's; see its docstring.
 *
 * Usage:
 *   node peer.js server --port P [--name NAME]       prints "READY <port>"
 *   node peer.js client --target HOST:PORT [--method unary|server_stream|client_stream|bidi]
 *                       [--data D ...] [--timeout S] [--metadata k=v ...] [--repeat N]
 *     prints one JSON line per call: {code, code_value, details, response
 *     or responses, initial, trailing}; --repeat makes N calls on one client
 *     (one HTTP/2 connection).
 */
const grpc = require('@grpc/grpc-js');

const SERVICE = 'weft.test.Echo';
const MAX_MESSAGE = 64 * 1024 * 1024;

// Identity (de)serializers: the wire message is the Buffer itself.
const ident = (b) => b;
function method(name, requestStream, responseStream) {
  return {
    path: `/${SERVICE}/${name}`,
    requestStream,
    responseStream,
    requestSerialize: ident,
    requestDeserialize: ident,
    responseSerialize: ident,
    responseDeserialize: ident,
  };
}
const DEFINITION = {
  Unary: method('Unary', false, false),
  ServerStream: method('ServerStream', false, true),
  ClientStream: method('ClientStream', true, false),
  Bidi: method('Bidi', true, true),
};

// ------------------------------------------------------------- server --

/** The steering metadata of one call. */
function controls(call) {
  const first = (k) => {
    const v = call.metadata.get(k);
    return v.length ? String(v[0]) : '';
  };
  const c = {
    sleepMs: parseInt(first('x-sleep-ms') || '0', 10),
    intervalMs: parseInt(first('x-interval-ms') || '0', 10),
    status: first('x-status') ? parseInt(first('x-status'), 10) : 0,
    message: first('x-message') || 'requested',
    trailersOnly: !['', '0'].includes(first('x-trailers-only')),
    trailer: new grpc.Metadata(),
    first,
  };
  const t = first('x-trailer');
  if (t) {
    const i = t.indexOf('=');
    c.trailer.set((i < 0 ? t : t.slice(0, i)).trim().toLowerCase(), i < 0 ? '' : t.slice(i + 1));
  }
  return c;
}

/** The initial metadata that tells the test what the server saw. */
function seen(call, c, name) {
  const md = new grpc.Metadata();
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  md.set('x-seen-timeout', Number.isFinite(ms) ? String(Math.max(0, Math.floor(ms - Date.now()))) : 'none');
  md.set('x-served-by', name);
  const host = typeof call.getHost === 'function' ? call.getHost() : '';
  if (host) md.set('x-seen-authority', host);
  const xfcc = c.first('x-forwarded-client-cert');
  if (xfcc) md.set('x-seen-xfcc', xfcc);
  md.set('x-seen-peer', call.getPeer());
  for (const raw of c.first('x-echo').split(',')) {
    const key = raw.trim().toLowerCase();
    if (key && !key.endsWith('-bin') && call.metadata.get(key).length) {
      md.set(`x-echo-${key}`, String(call.metadata.get(key)[0]));
    }
  }
  return md;
}

/** Resolves after `ms`, or as soon as the call is cancelled (by the client
 * or by its deadline). */
function sleep(call, ms) {
  return new Promise((resolve) => {
    if (!(ms > 0) || call.cancelled) return resolve();
    const done = () => {
      clearTimeout(timer);
      call.removeListener('cancelled', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    call.once('cancelled', done);
  });
}

function statusError(c, code) {
  return { code, details: c.message, metadata: c.trailer };
}

/**
 * Common prologue: answers trailers-only (returns false), or sends the
 * initial metadata, sleeps, and returns the controls.
 */
async function begin(call, name, fail) {
  const c = controls(call);
  if (c.trailersOnly) {
    // Nothing sent yet: grpc-js answers with a single HEADERS frame.
    fail(statusError(c, c.status || grpc.status.UNAVAILABLE));
    return null;
  }
  call.sendMetadata(seen(call, c, name));
  await sleep(call, c.sleepMs);
  return c;
}

function writeAll(call, chunk) {
  // Honour backpressure, so a large stream goes as fast as the peer reads.
  return new Promise((resolve) => {
    if (call.write(chunk)) return resolve();
    call.once('drain', resolve);
  });
}

function makeHandlers(name) {
  const prefix = Buffer.from(`${name}:`);
  const streamFail = (call) => (err) => call.emit('error', err);
  return {
    Unary: async (call, callback) => {
      const c = await begin(call, name, (err) => callback(err));
      if (!c || call.cancelled) return;
      if (c.status) return callback(statusError(c, c.status));
      callback(null, Buffer.concat([prefix, call.request]), c.trailer);
    },
    ServerStream: async (call) => {
      const c = await begin(call, name, streamFail(call));
      if (!c) return;
      const [nText, sizeText] = call.request.toString('ascii').split(',');
      const n = parseInt(nText || '0', 10);
      const size = parseInt(sizeText || '0', 10);
      for (let i = 0; i < n; i++) {
        if (call.cancelled) return;
        if (i && c.intervalMs) await sleep(call, c.intervalMs);
        let msg = Buffer.from(`${name}:${i}`);
        if (msg.length < size) msg = Buffer.concat([msg, Buffer.alloc(size - msg.length, '.')]);
        await writeAll(call, msg);
      }
      if (call.cancelled) return;
      if (c.status) call.emit('error', statusError(c, c.status));
      else call.end(c.trailer);
    },
    ClientStream: async (call, callback) => {
      const c = await begin(call, name, (err) => callback(err));
      if (!c) return;
      let count = 0;
      let total = 0;
      call.on('data', (m) => {
        count += 1;
        total += m.length;
      });
      call.on('end', () => {
        if (c.status) callback(statusError(c, c.status));
        else callback(null, Buffer.from(`${name}:count=${count},bytes=${total}`), c.trailer);
      });
      call.on('error', () => {});
    },
    Bidi: async (call) => {
      const c = await begin(call, name, streamFail(call));
      if (!c) return;
      call.on('data', (m) => call.write(Buffer.concat([prefix, m])));
      call.on('end', () => {
        if (call.cancelled) return;
        if (c.status) call.emit('error', statusError(c, c.status));
        else call.end(c.trailer);
      });
    },
  };
}

function serve(port, name) {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE,
    'grpc.max_send_message_length': MAX_MESSAGE,
  });
  server.addService(DEFINITION, makeHandlers(name));
  server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
    if (err) {
      process.stderr.write(`peer.js: cannot listen on 127.0.0.1:${port}: ${err.message}\n`);
      process.exit(1);
    }
    process.stdout.write(`READY ${bound}\n`);
  });
  const stop = () => {
    // Calls still running get a moment, then are cancelled.
    const force = setTimeout(() => {
      server.forceShutdown();
      process.exit(0);
    }, 500);
    server.tryShutdown(() => {
      clearTimeout(force);
      process.exit(0);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// ------------------------------------------------------------- client --

// Headers of the HTTP/2 framing that grpcio keeps out of its metadata; left
// out here too so that both clients report the same thing.
const FRAMING = new Set(['content-type', 'grpc-encoding', 'grpc-accept-encoding', 'grpc-status', 'grpc-message']);

/** Metadata as {key: value}; repeated values joined with ", ", -bin
 * values in base64 (as grpc_peer.py prints them). */
function mdObject(md) {
  const out = {};
  if (!md) return out;
  for (const [k, values] of Object.entries(md.toJSON())) {
    if (FRAMING.has(k)) continue;
    out[k] = values.map((v) => (Buffer.isBuffer(v) ? v.toString('base64') : String(v))).join(', ');
  }
  return out;
}

function result(status, initial, extra) {
  return {
    code: grpc.status[status.code] || String(status.code),
    code_value: status.code,
    details: status.details || '',
    initial: mdObject(initial),
    trailing: mdObject(status.metadata),
    ...extra,
  };
}

function callOptions(timeout) {
  return timeout == null ? {} : { deadline: new Date(Date.now() + timeout * 1000) };
}

function requestMetadata(pairs) {
  const md = new grpc.Metadata();
  for (const [k, v] of pairs) md.add(k.toLowerCase(), v);
  return md;
}

/** Runs one call; resolves with the result object once the status is in. */
function runCall(client, methodName, data, pairs, timeout) {
  const md = requestMetadata(pairs);
  const opts = callOptions(timeout);
  return new Promise((resolve) => {
    let initial = null;
    const text = (b) => b.toString('utf8');
    if (methodName === 'unary' || methodName === 'client_stream') {
      let response = null;
      const cb = (err, value) => {
        if (!err) response = value;
      };
      const call = methodName === 'unary'
        ? client.Unary(Buffer.from(data[0] || ''), md, opts, cb)
        : client.ClientStream(md, opts, cb);
      call.on('metadata', (m) => { initial = m; });
      call.on('status', (s) => resolve(result(s, initial, { response: response && text(response) })));
      if (methodName === 'client_stream') {
        for (const d of data) call.write(Buffer.from(d));
        call.end();
      }
      return;
    }
    const responses = [];
    if (methodName === 'server_stream') {
      const call = client.ServerStream(Buffer.from(data[0] || '0'), md, opts);
      call.on('metadata', (m) => { initial = m; });
      call.on('data', (m) => responses.push(text(m)));
      call.on('error', () => {});
      call.on('status', (s) => resolve(result(s, initial, { responses })));
      return;
    }
    // bidi, ping-pong: the next message goes once the previous reply is in.
    const call = client.Bidi(md, opts);
    let next = 0;
    const sendNext = () => {
      if (next < data.length) call.write(Buffer.from(data[next++]));
      else call.end();
    };
    call.on('metadata', (m) => { initial = m; });
    call.on('data', (m) => {
      responses.push(text(m));
      sendNext();
    });
    call.on('error', () => {});
    call.on('status', (s) => resolve(result(s, initial, { responses })));
    sendNext();
  });
}

async function clientMain(a) {
  const Client = grpc.makeGenericClientConstructor(DEFINITION, SERVICE);
  const client = new Client(a.target, grpc.credentials.createInsecure(), {
    'grpc.enable_http_proxy': 0,
    'grpc.use_local_subchannel_pool': 1,
    'grpc.max_receive_message_length': MAX_MESSAGE,
    'grpc.max_send_message_length': MAX_MESSAGE,
  });
  for (let i = 0; i < a.repeat; i++) {
    const r = await runCall(client, a.method, a.data, a.metadata, a.timeout);
    process.stdout.write(JSON.stringify(r) + '\n');
  }
  client.close();
}

// ---------------------------------------------------------------- CLI --

function parseArgs(argv) {
  const a = { mode: argv[0], port: null, name: 'grpc', target: null, method: 'unary', data: [],
    metadata: [], timeout: null, repeat: 1 };
  for (let i = 1; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    switch (flag) {
      case '--port': a.port = parseInt(value, 10); break;
      case '--name': a.name = value; break;
      case '--target': a.target = value; break;
      case '--method': a.method = value; break;
      case '--data': a.data.push(value); break;
      case '--timeout': a.timeout = parseFloat(value); break;
      case '--repeat': a.repeat = parseInt(value, 10); break;
      case '--metadata': {
        const j = value.indexOf('=');
        a.metadata.push(j < 0 ? [value, ''] : [value.slice(0, j), value.slice(j + 1)]);
        break;
      }
      default: throw new Error(`unknown option ${flag}`);
    }
  }
  if (a.mode === 'server' && !Number.isInteger(a.port)) throw new Error('server needs --port');
  if (a.mode === 'client' && !a.target) throw new Error('client needs --target');
  if (a.mode === 'client' && !['unary', 'server_stream', 'client_stream', 'bidi'].includes(a.method)) {
    throw new Error(`unknown --method ${a.method}`);
  }
  if (!['server', 'client'].includes(a.mode)) throw new Error('mode must be server or client');
  return a;
}

function main() {
  let a;
  try {
    a = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`peer.js: ${e.message}\n` +
      'usage: peer.js server --port P [--name NAME]\n' +
      '       peer.js client --target HOST:PORT [--method M] [--data D ...] [--timeout S] ' +
      '[--metadata k=v ...] [--repeat N]\n');
    process.exit(2);
  }
  if (a.mode === 'server') serve(a.port, a.name);
  else clientMain(a).catch((e) => {
    process.stderr.write(`peer.js: ${e.stack || e}\n`);
    process.exit(1);
  });
}

main();
