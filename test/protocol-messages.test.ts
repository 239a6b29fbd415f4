// The control-channel validators each end runs on what the other sends: every
// message the contract declares passes as sent, and hostile input (wrong types,
// unknown message types, oversized or missing fields, not JSON) is refused. The
// replica set of a pulled config is checked the same way.
import t from 'tap';
import {
  MAX_CONTROL_MESSAGE,
  MAX_REPLICAS,
  MESSAGE_LIMITS,
  parseConnectorMessage,
  parseFailureReport,
  parseRelayMessage,
  parseReplicaSet,
  type RelayMessage,
} from '../src/protocol/connector-api.js';

const ID = 'a6f2c1de-0c1b-4d7e-9a41-6a3f1e2d9b70';
const request = {
  type: 'request',
  id: ID,
  app: 'wiki',
  method: 'GET',
  target: 'a/b?c=1',
  headers: [
    ['accept', '*/*'],
    ['set-cookie', 'a=1'],
  ],
  body: false,
  upgrade: false,
};

t.test('every relay message passes as the relay sends it', async (t) => {
  const good: RelayMessage[] = [
    { type: 'hello', connectorId: ID, channelId: ID, configVersion: 'v1' },
    { type: 'config-changed', configVersion: 'abc' },
    { type: 'revoked', reason: 'certificate revoked' },
    { type: 'revoked', reason: '' },
    { type: 'cancel', id: ID },
    request as RelayMessage,
    { ...request, target: '', headers: [] } as RelayMessage,
  ];
  for (const msg of good) {
    const parsed = parseRelayMessage(JSON.stringify(msg));
    t.ok(parsed.ok, `${msg.type} accepted`);
    if (parsed.ok) t.same(parsed.message, msg, `${msg.type} unchanged`);
  }
});

t.test('hostile relay messages are refused', async (t) => {
  const long = (n: number) => 'x'.repeat(n + 1);
  const cases: [string, string][] = [
    ['not JSON', '{type: hello}'],
    ['empty', ''],
    ['JSON null', 'null'],
    ['a string', '"hello"'],
    ['an array', '[{"type":"cancel","id":"x"}]'],
    ['no type', JSON.stringify({ id: ID })],
    ['type not a string', JSON.stringify({ type: 7, id: ID })],
    ['unknown type', JSON.stringify({ type: 'shutdown' })],
    ['a connector message sent the wrong way', JSON.stringify({ type: 'draining' })],
    ['an inline response head as text', JSON.stringify({ type: 'response', id: ID, status: 200, headers: [] })],
    ['hello without configVersion', JSON.stringify({ type: 'hello', connectorId: ID, channelId: ID })],
    [
      'hello with a numeric connectorId',
      JSON.stringify({ type: 'hello', connectorId: 1, channelId: ID, configVersion: 'v' }),
    ],
    [
      'hello with an empty channelId',
      JSON.stringify({ type: 'hello', connectorId: ID, channelId: '', configVersion: 'v' }),
    ],
    [
      'config-changed with a version too long',
      JSON.stringify({ type: 'config-changed', configVersion: long(MESSAGE_LIMITS.version) }),
    ],
    ['config-changed with null version', JSON.stringify({ type: 'config-changed', configVersion: null })],
    ['revoked without reason', JSON.stringify({ type: 'revoked' })],
    ['revoked with a reason too long', JSON.stringify({ type: 'revoked', reason: long(MESSAGE_LIMITS.reason) })],
    ['cancel with an object id', JSON.stringify({ type: 'cancel', id: { $ne: null } })],
    ['cancel with an id too long', JSON.stringify({ type: 'cancel', id: long(MESSAGE_LIMITS.id) })],
    ['request without id', JSON.stringify({ ...request, id: undefined })],
    ['request with an app name too long', JSON.stringify({ ...request, app: long(MESSAGE_LIMITS.name) })],
    ['request with a method too long', JSON.stringify({ ...request, method: long(MESSAGE_LIMITS.method) })],
    ['request with an empty method', JSON.stringify({ ...request, method: '' })],
    ['request with a numeric target', JSON.stringify({ ...request, target: 1 })],
    ['request with body "true"', JSON.stringify({ ...request, body: 'true' })],
    ['request without upgrade', JSON.stringify({ ...request, upgrade: undefined })],
    ['request with headers an object', JSON.stringify({ ...request, headers: { accept: '*/*' } })],
    ['request with a header triple', JSON.stringify({ ...request, headers: [['a', 'b', 'c']] })],
    ['request with a numeric header value', JSON.stringify({ ...request, headers: [['content-length', 5]] })],
    ['request with a null header', JSON.stringify({ ...request, headers: [null] })],
    ['larger than a channel message', JSON.stringify({ ...request, target: 'x'.repeat(MAX_CONTROL_MESSAGE) })],
  ];
  for (const [what, text] of cases) {
    const parsed = parseRelayMessage(text);
    t.equal(parsed.ok, false, what);
    if (!parsed.ok) t.ok(parsed.error.length > 0 && parsed.error.length < 200, `${what}: a short reason for the log`);
  }
});

t.test('connector messages: draining passes, anything else is refused', async (t) => {
  const parsed = parseConnectorMessage(JSON.stringify({ type: 'draining' }));
  t.ok(parsed.ok);
  if (parsed.ok) t.same(parsed.message, { type: 'draining' });
  const extra = parseConnectorMessage(JSON.stringify({ type: 'draining', x: 'y'.repeat(100) }));
  t.same(extra.ok && extra.message, { type: 'draining' }, 'extra fields are dropped, not passed on');
  const bad: [string, string][] = [
    ['not JSON', 'draining'],
    ['null', 'null'],
    ['a number', '42'],
    ['an array', '[]'],
    ['no type', '{}'],
    ['type not a string', JSON.stringify({ type: ['draining'] })],
    ['unknown type', JSON.stringify({ type: 'hello' })],
    ['a relay message sent the wrong way', JSON.stringify(request)],
    ['larger than a channel message', JSON.stringify({ type: 'draining', pad: 'x'.repeat(MAX_CONTROL_MESSAGE) })],
  ];
  for (const [what, text] of bad) t.equal(parseConnectorMessage(text).ok, false, what);
});

t.test('failure reports: known codes pass, messages are cut, the rest is refused', async (t) => {
  t.same(parseFailureReport({ code: 'ERR_BACKEND_TIMEOUT', message: 'slow' }), {
    code: 'ERR_BACKEND_TIMEOUT',
    message: 'slow',
  });
  for (const code of ['ERR_BACKEND_UNREACHABLE', 'ERR_BACKEND_TIMEOUT', 'ERR_APP_UNKNOWN', 'ERR_BACKEND_FAILED']) {
    t.equal(parseFailureReport({ code, message: 'm' })?.code, code, code);
  }
  t.equal(
    parseFailureReport({ code: 'ERR_BACKEND_FAILED', message: 'x'.repeat(10_000) })?.message.length,
    300,
    'a long message is cut to 300',
  );
  t.equal(
    parseFailureReport({ code: 'ERR_BACKEND_FAILED' })?.message,
    'the application failed',
    'a missing message gets a default',
  );
  t.equal(
    parseFailureReport({ code: 'ERR_BACKEND_FAILED', message: 5 })?.message,
    'the application failed',
    'a non-string message gets a default',
  );
  const bad: [string, unknown][] = [
    ['null', null],
    ['an array', ['ERR_BACKEND_FAILED']],
    ['no code', { message: 'm' }],
    ['a code outside the contract', { code: 'ERR_INTERNAL', message: 'm' }],
    ['a prototype name as code', { code: 'toString', message: 'm' }],
    ['a numeric code', { code: 502, message: 'm' }],
  ];
  for (const [what, body] of bad) t.equal(parseFailureReport(body), undefined, what);
});

t.test('replica sets: a valid set passes sorted by id, no set is the unknown set', async (t) => {
  const set = [
    { id: 'relay-b', url: 'https://relay-b.example.com:8444/' },
    { id: 'relay-a', url: 'https://relay-a.example.com:8444' },
  ];
  t.same(parseReplicaSet(set), {
    ok: true,
    message: [
      { id: 'relay-a', url: 'https://relay-a.example.com:8444/' },
      { id: 'relay-b', url: 'https://relay-b.example.com:8444/' },
    ],
  });
  t.same(parseReplicaSet(undefined), { ok: true, message: undefined }, 'a relay from before replicas sends none');
  t.same(
    parseReplicaSet([]),
    { ok: true, message: [] },
    'an empty set (the connector then dials its registration URL)',
  );
  const most = Array.from({ length: MAX_REPLICAS }, (_, i) => ({ id: `r${i}`, url: `https://r${i}.example.com/` }));
  t.equal(parseReplicaSet(most).ok, true, `${MAX_REPLICAS} replicas pass`);
  const extra = parseReplicaSet([{ id: 'a', url: 'https://a.example.com/', heartbeat: 5 }]);
  t.same(extra.ok && extra.message, [{ id: 'a', url: 'https://a.example.com/' }], 'extra fields are dropped');
});

t.test('hostile replica sets are refused with a short reason', async (t) => {
  const a = { id: 'a', url: 'https://a.example.com/' };
  const many = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `r${i}`, url: `https://r${i}.example.com/` }));
  const cases: [string, unknown][] = [
    ['null', null],
    ['an object', { a }],
    ['a string', 'https://a.example.com/'],
    ['10,000 entries', many(10_000)],
    [`${MAX_REPLICAS + 1} entries`, many(MAX_REPLICAS + 1)],
    ['a null entry', [a, null]],
    ['an array entry', [a, ['b', 'https://b.example.com/']]],
    ['a numeric id', [a, { id: 7, url: 'https://b.example.com/' }]],
    ['an object id', [a, { id: { $ne: null }, url: 'https://b.example.com/' }]],
    ['an empty id', [a, { id: '', url: 'https://b.example.com/' }]],
    ['an id too long', [a, { id: 'x'.repeat(MESSAGE_LIMITS.id + 1), url: 'https://b.example.com/' }]],
    ['duplicate ids', [a, { id: 'a', url: 'https://b.example.com/' }]],
    ['duplicate addresses', [a, { id: 'b', url: 'https://A.example.com:443/other' }]],
    ['no url', [a, { id: 'b' }]],
    ['a numeric url', [a, { id: 'b', url: 8444 }]],
    ['not a URL', [a, { id: 'b', url: 'relay-b:8444' }]],
    ['http://', [a, { id: 'b', url: 'http://b.example.com/' }]],
    ['wss://', [a, { id: 'b', url: 'wss://b.example.com/' }]],
    ['file:', [a, { id: 'b', url: 'file:///etc/passwd' }]],
    ['a URL with credentials', [a, { id: 'b', url: 'https://user:secret@b.example.com/' }]],
    ['a URL too long', [a, { id: 'b', url: `https://b.example.com/${'x'.repeat(3000)}` }]],
  ];
  for (const [what, v] of cases) {
    const parsed = parseReplicaSet(v);
    t.equal(parsed.ok, false, what);
    if (!parsed.ok) {
      t.ok(parsed.error.length > 0 && parsed.error.length < 200, `${what}: a short reason for the log`);
      t.notMatch(parsed.error, /secret/, `${what}: no credentials in the reason`);
    }
  }
});
