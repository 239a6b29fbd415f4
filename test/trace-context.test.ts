// W3C trace context: traceparent and tracestate as strangers send them (tables of
// malformed headers), the relay's hop (same trace id, a new parent id, flags kept),
// and end to end through a real relay and connector: what the backend receives and
// what the relay logs.
import t from 'tap';
import { request as httpsRequest } from 'node:https';
import {
  TRACESTATE_MAX,
  continueTrace,
  newSpanId,
  newTraceId,
  parseTraceparent,
  parseTracestate,
} from '../src/net/trace-context.js';
import { request } from 'undici';
import { startBackend, startHeaderEcho, type EchoBody } from './helpers/backend.js';
import { BrowserSim } from './helpers/browser-sim.js';
import { codeFlow } from './helpers/code-flow.js';
import { capturingLogger, startHarness } from './helpers/harness.js';
import { httpGet, parseExposition } from './helpers/prom-text.js';
import { waitFor } from './helpers/wait.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const VALID = `00-${TRACE}-${PARENT}-01`;

t.test('traceparent: version 00 and future versions as the spec reads them', async (t) => {
  t.same(parseTraceparent(VALID), { version: '00', traceId: TRACE, parentId: PARENT, flags: '01' });
  t.same(parseTraceparent(`00-${TRACE}-${PARENT}-00`)?.flags, '00', 'not sampled');
  t.same(parseTraceparent(`00-${TRACE}-${PARENT}-ff`)?.flags, 'ff', 'unknown flag bits parse (cleared when passed on)');
  // A higher version: the first four fields, then the end or a dash and whatever follows.
  t.same(parseTraceparent(`01-${TRACE}-${PARENT}-01`), {
    version: '01',
    traceId: TRACE,
    parentId: PARENT,
    flags: '01',
  });
  t.same(parseTraceparent(`cc-${TRACE}-${PARENT}-01-what-the-future-will-be-like`)?.traceId, TRACE);
});

t.test('traceparent: hostile and malformed values are refused', async (t) => {
  const cases: [string, string | string[] | undefined][] = [
    ['absent', undefined],
    ['empty', ''],
    ['two headers (array)', [VALID, VALID]],
    ['two headers joined by Node', `${VALID}, ${VALID}`],
    ['two future-version headers joined by Node', `01-${TRACE}-${PARENT}-01, 01-${TRACE}-${PARENT}-01`],
    ['version ff', `ff-${TRACE}-${PARENT}-01`],
    ['version 00 with a trailing field', `${VALID}-00`],
    ['version 00 with a trailing dash', `${VALID}-`],
    ['version 00 with trailing junk', `${VALID}x`],
    ['trailing space kept inside', `${VALID} `],
    ['leading junk', ` x${VALID}`],
    ['upper-case trace id', `00-${TRACE.toUpperCase()}-${PARENT}-01`],
    ['upper-case parent id', `00-${TRACE}-${PARENT.toUpperCase()}-01`],
    ['upper-case version', `0A-${TRACE}-${PARENT}-01`],
    ['upper-case flags', `00-${TRACE}-${PARENT}-0A`],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${PARENT}-01`],
    ['all-zero parent id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['short trace id', `00-${TRACE.slice(1)}-${PARENT}-01`],
    ['long trace id', `00-${TRACE}a-${PARENT}-01`],
    ['short parent id', `00-${TRACE}-${PARENT.slice(1)}-01`],
    ['long parent id', `00-${TRACE}-${PARENT}a-01`],
    ['one-digit flags', `00-${TRACE}-${PARENT}-1`],
    ['three-digit flags', `00-${TRACE}-${PARENT}-011`],
    ['one-digit version', `0-${TRACE}-${PARENT}-01`],
    ['non-hex trace id', `00-${TRACE.slice(0, 31)}g-${PARENT}-01`],
    ['non-hex parent id', `00-${TRACE}-${PARENT.slice(0, 15)}z-01`],
    ['non-hex flags', `00-${TRACE}-${PARENT}-0x`],
    ['underscores for dashes', `00_${TRACE}_${PARENT}_01`],
    ['missing fields', `00-${TRACE}`],
    ['future version too short', `01-${TRACE}-${PARENT}-0`],
    ['future version, no dash after flags', `01-${TRACE}-${PARENT}-01x`],
    ['future version, control character after', `01-${TRACE}-${PARENT}-01-\u0001`],
    ['future version, oversize', `01-${TRACE}-${PARENT}-01-${'a'.repeat(600)}`],
    ['unicode digits', `00-${TRACE.slice(0, 31)}\u0661-${PARENT}-01`],
  ];
  for (const [name, value] of cases) t.equal(parseTraceparent(value), undefined, name);
});

t.test('tracestate: kept when well-formed, bounded, dropped whole when not', async (t) => {
  t.equal(parseTracestate('rojo=00f067aa0ba902b7,congo=t61rcWkgMzE'), 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE');
  t.equal(parseTracestate(' rojo=1 ,\t,congo=2\t'), 'rojo=1,congo=2', 'optional white space and empty members');
  t.equal(parseTracestate(['rojo=1', 'congo=2']), 'rojo=1,congo=2', 'several headers form one list');
  t.equal(parseTracestate('tenant@vendor=x'), 'tenant@vendor=x', 'multi-tenant key');
  t.equal(parseTracestate('a=va lue'), 'a=va lue', 'inner space in a value');
  t.equal(parseTracestate(''), undefined, 'empty');
  const bad: [string, string][] = [
    ['no equals sign', 'rojo'],
    ['empty key', '=1'],
    ['upper-case key', 'Rojo=1'],
    ['key starting with a digit', '1a=1'],
    ['empty value', 'rojo='],
    ['equals sign in a value', 'rojo=a=b'],
    ['duplicate key', 'rojo=1,rojo=2'],
    ['non-ASCII value', 'rojo=ü'],
    ['control character', 'rojo=\u0007'],
    ['system id too long', `t@${'v'.repeat(15)}=1`],
    ['key too long', `${'k'.repeat(257)}=1`],
    ['value too long', `k=${'v'.repeat(257)}`],
    ['33 members', Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(',')],
    ['oversize input', `k=${'v'.repeat(100)},`.repeat(100)],
  ];
  for (const [name, value] of bad) t.equal(parseTracestate(value), undefined, name);

  // Over 512 characters: members over 128 characters go first, then members from the end.
  const long = `big=${'x'.repeat(200)}`;
  const small = Array.from({ length: 30 }, (_, i) => `k${String(i).padStart(2, '0')}=${'v'.repeat(14)}`);
  const cut = parseTracestate([long, ...small].join(','))!;
  t.ok(cut.length <= TRACESTATE_MAX, `cut to ${cut.length} characters`);
  t.notMatch(cut, /big=/, 'the long member went first');
  t.match(cut, /^k00=/, 'the list keeps its head');
  t.notMatch(cut, /k29=/, 'and loses its tail');
  t.equal(parseTracestate(small.slice(0, 5).join(',')), small.slice(0, 5).join(','), 'short lists are untouched');
});

t.test("the relay's hop: continued or new", async (t) => {
  const c = continueTrace(VALID, 'rojo=1');
  t.equal(c.traceId, TRACE, 'same trace id');
  t.equal(c.parentId, PARENT, 'the incoming parent is remembered');
  t.not(c.spanId, PARENT, 'a new parent id for the next hop');
  t.match(c.spanId, /^[0-9a-f]{16}$/);
  t.equal(c.traceparent, `00-${TRACE}-${c.spanId}-01`);
  t.equal(c.tracestate, 'rojo=1');

  t.equal(continueTrace(`00-${TRACE}-${PARENT}-00`, undefined).flags, '00', 'not sampled stays not sampled');
  t.equal(continueTrace(`00-${TRACE}-${PARENT}-03`, undefined).flags, '03', 'sampled and random kept');
  t.equal(continueTrace(`00-${TRACE}-${PARENT}-ff`, undefined).flags, '03', 'reserved bits cleared');
  const future = continueTrace(`cc-${TRACE}-${PARENT}-01-more`, undefined);
  t.equal(future.traceparent, `00-${TRACE}-${future.spanId}-01`, 'a future version goes on as version 00');

  for (const bad of [`${VALID}, ${VALID}`, 'garbage', `00-${'0'.repeat(32)}-${PARENT}-01`]) {
    const n = continueTrace(bad, 'rojo=1');
    t.not(n.traceId, TRACE, `new trace for ${JSON.stringify(bad.slice(0, 20))}`);
    t.match(n.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    t.equal(n.parentId, undefined);
    t.equal(n.tracestate, undefined, 'tracestate is dropped without a valid traceparent');
  }
  const fresh = continueTrace(undefined, undefined);
  t.equal(fresh.traceparent, `00-${fresh.traceId}-${fresh.spanId}-01`, 'a started trace is sampled');

  // Ids are random, unique and never all zero, across refills of the random pool.
  const ids = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const tr = newTraceId();
    const sp = newSpanId();
    if (!/^[0-9a-f]{32}$/.test(tr) || !/^[0-9a-f]{16}$/.test(sp) || /^0+$/.test(tr) || /^0+$/.test(sp))
      t.fail(`bad ids ${tr} ${sp}`);
    ids.add(tr).add(sp);
  }
  t.equal(ids.size, 4000, 'no id repeats');
});

t.test('end to end: the backend receives the trace, the log names it', async (t) => {
  const backend = await startBackend();
  t.teardown(() => backend.close());
  const { log, lines } = capturingLogger();
  const h = await startHarness(t, {
    log,
    yaml: () => `apps:
  - name: traced
    externalUrl: "https://traced.test/"
    internalUrl: "${backend.origin}/traced/"
    preauth: passthrough
`,
  });
  await h.addConnector();
  const ca = h.relay.ca.certPem;
  /** node:https, which sends repeated headers as given (undici folds some). */
  const get = (headers: Record<string, string | string[]>) =>
    new Promise<EchoBody>((resolve, reject) => {
      const req = httpsRequest({
        host: '127.0.0.1',
        port: h.publicPort,
        servername: 'traced.test',
        ca,
        agent: false,
        path: '/echo',
        headers: { host: `traced.test:${h.publicPort}`, ...headers },
      });
      req.on('error', reject);
      req.on('response', (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(text) as EchoBody) : reject(new Error(text))));
      });
      req.end();
    });
  const requestLine = async (requestId: string) =>
    (await waitFor(() => lines.find((l) => l.msg === 'request' && l['request_id'] === requestId), {
      what: `the request line of ${requestId}`,
    }))!;

  await t.test('a valid traceparent is continued', async (t) => {
    const seen = await get({ traceparent: VALID, tracestate: 'rojo=00f067aa0ba902b7' });
    const tp = parseTraceparent(seen.headers['traceparent']);
    t.ok(tp, `the backend got a valid traceparent: ${String(seen.headers['traceparent'])}`);
    t.equal(tp?.traceId, TRACE, 'with the incoming trace id');
    t.not(tp?.parentId, PARENT, "and the relay's own parent id");
    t.equal(tp?.flags, '01');
    t.equal(seen.headers['tracestate'], 'rojo=00f067aa0ba902b7', 'tracestate passed on');
    const line = await requestLine(String(seen.headers['x-request-id']));
    t.equal(line['trace_id'], TRACE, 'the request log line carries the trace id');
    t.match(line['request_id'], /^[0-9a-f-]{36}$/, 'beside the request id');
  });

  await t.test('no traceparent: the relay starts a trace', async (t) => {
    const seen = await get({});
    const tp = parseTraceparent(seen.headers['traceparent']);
    t.ok(tp, 'the backend got a traceparent');
    t.equal(tp?.flags, '01');
    t.equal(seen.headers['tracestate'], undefined);
    const line = await requestLine(String(seen.headers['x-request-id']));
    t.equal(line['trace_id'], tp?.traceId, 'the log names the trace the backend got');
  });

  await t.test('hostile trace headers start a new trace and never reach the backend', async (t) => {
    const cases: [string, Record<string, string | string[]>][] = [
      ['two traceparent headers', { traceparent: [VALID, VALID], tracestate: 'rojo=1' }],
      ['two future-version traceparents', { traceparent: [`01-${TRACE}-${PARENT}-01`, `01-${TRACE}-${PARENT}-01`] }],
      ['upper case', { traceparent: VALID.toUpperCase(), tracestate: 'rojo=1' }],
      ['all-zero trace id', { traceparent: `00-${'0'.repeat(32)}-${PARENT}-01` }],
      ['version 00 with junk', { traceparent: `${VALID}-junk` }],
      ['oversize tracestate', { traceparent: VALID, tracestate: `k=${'v'.repeat(8000)}` }],
      ['malformed tracestate', { traceparent: VALID, tracestate: 'Rojo=1,rojo=2' }],
    ];
    for (const [name, headers] of cases) {
      const seen = await get(headers);
      const raw = seen.headers['traceparent'];
      t.type(raw, 'string', `${name}: one traceparent reaches the backend`);
      const tp = parseTraceparent(raw);
      t.ok(tp, `${name}: and it is valid`);
      const continued = name.includes('tracestate');
      t.equal(tp?.traceId === TRACE, continued, `${name}: trace ${continued ? 'continued' : 'restarted'}`);
      t.equal(seen.headers['tracestate'], undefined, `${name}: no tracestate passed on`);
    }
    // Underscore spellings of the trace headers are not a way around the relay's hop.
    const sneaky = await get({ trace_parent: VALID });
    t.not(parseTraceparent(sneaky.headers['traceparent'])?.traceId, TRACE, 'trace_parent is not read as traceparent');
  });
});

t.test('sign-in rows carry the trace id; /metrics counts the sign-in', async (t) => {
  const port = await startHeaderEcho(t);
  const h = await startHarness(t, {
    yaml: () => `admin: { listen: "127.0.0.1:0" }
apps:
  - { name: api, externalUrl: "https://api.test/", internalUrl: "http://127.0.0.1:${port}/", clientId: "urn:proxyctl:api", clientSecret: api-secret, assignment: any }
`,
  });
  const callback = `https://api.test:${h.publicPort}/.proxyctl/callback`;
  h.idp.registerClient({ clientId: 'urn:proxyctl:api', clientSecret: 'api-secret', redirectUris: [callback] });
  h.idp.setUser('alice', { email: 'alice@example.com', name: 'Alice', groups: ['staff'] });
  await h.addConnector();
  const tokens = await codeFlow(new BrowserSim(h.client), {
    issuer: h.idp.issuer,
    clientId: 'urn:proxyctl:api',
    clientSecret: 'api-secret',
    redirectUri: callback,
    username: 'alice',
    resource: 'urn:proxyctl:api',
  });
  const r = await request(h.url('api.test', '/native'), {
    dispatcher: h.client,
    headers: { authorization: `Bearer ${tokens.accessToken}`, traceparent: VALID },
  });
  await r.body.dump();
  t.equal(r.statusCode, 200);
  const row = (await waitFor(async () => (await h.relay.store.signIns.list(100)).find((s) => s.kind === 'bearer'), {
    what: 'the bearer sign-in row',
  }))!;
  t.equal(row.traceId, TRACE, "the sign-in row names the request's trace");
  const metrics = parseExposition((await httpGet(h.relay.adminAddress()!.port, '/metrics')).body);
  t.equal(metrics.value('proxyctl_relay_signins_total', { result: 'success', method: 'bearer' }), 1);
});
