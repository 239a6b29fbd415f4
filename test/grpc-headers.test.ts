// Header rules gRPC depends on, as tables: trailers from a backend are filtered like
// headers and bounded; `te: trailers` survives only for HTTP/2 apps; gRPC answers are
// never translated; the inline frame carries trailers and refuses malformed ones.
import t from 'tap';
import { requestHeadersForBackend, trailersForClient } from '../src/relay/edge/headers.js';
import { pairsOf } from '../src/net/header-fields.js';
import { translateResponse } from '../src/relay/translate/apply.js';
import { parseRelayConfig } from '../src/config/relay-config.js';
import { GRPC_STATUS, grpcMessage, grpcStatusOf } from '../src/http/grpc-refusal.js';
import { decodeInlineResponse, encodeInlineResponse, type HeaderPairs } from '../src/protocol/connector-api.js';

const LIMITS = { maxBytes: 1024, maxFields: 11 };

t.test('trailers: what the user gets', async (t) => {
  const cases: [string, HeaderPairs, Record<string, string | string[]> | 'too-large'][] = [
    [
      'gRPC status, message and metadata pass, names in lower case',
      [
        ['grpc-status', '5'],
        ['Grpc-Message', 'not%20found'],
        ['x-trailer-bin', 'AAEC/w=='],
      ],
      { 'grpc-status': '5', 'grpc-message': 'not%20found', 'x-trailer-bin': 'AAEC/w==' },
    ],
    [
      'repeats are kept in order',
      [
        ['x-a', '1'],
        ['X-A', '2'],
      ],
      { 'x-a': ['1', '2'] },
    ],
    [
      'pseudo-headers, hop-by-hop and header-only fields are dropped',
      [
        [':status', '200'],
        ['connection', 'close'],
        ['transfer-encoding', 'chunked'],
        ['te', 'trailers'],
        ['trailer', 'x'],
        ['content-length', '0'],
        ['Content-Type', 'text/html'],
        ['set-cookie', 'a=b'],
        ['location', 'https://evil.example/'],
        ['www-authenticate', 'Basic'],
        ['x-kept', 'yes'],
      ],
      { 'x-kept': 'yes' },
    ],
    [
      'identity headers cannot be set by a backend trailer',
      [
        ['X-Proxyctl-User', 'admin'],
        ['x_proxyctl_jwt_assertion', 'x'],
      ],
      {},
    ],
    ['too many fields', Array.from({ length: 12 }, (_, i): [string, string] => [`x-${i}`, 'v']), 'too-large'],
    ['too many bytes', [['x-big', 'v'.repeat(1100)]], 'too-large'],
    [
      'dropped fields still count towards the limit',
      [
        ['content-type', 'v'.repeat(1000)],
        ['x-small', 'v'.repeat(100)],
      ],
      'too-large',
    ],
    ['none', [], {}],
  ];
  for (const [name, input, expected] of cases) t.same(trailersForClient(input, LIMITS), expected, name);
  t.same(pairsOf(['a', '1', 'B', '2']), [
    ['a', '1'],
    ['B', '2'],
  ]);
});

t.test('te: trailers reaches HTTP/2 backends only, and only that value', async (t) => {
  const ctx = {
    clientAddress: '192.0.2.1',
    trustedForwardedFor: undefined,
    host: 'x.test',
    requestId: 'r',
    upgrade: false,
  };
  const te = (raw: string[], teTrailers: boolean) => {
    const headers: Record<string, string> = {};
    for (let i = 0; i < raw.length; i += 2) headers[raw[i]!.toLowerCase()] = raw[i + 1]!;
    return requestHeadersForBackend(raw, headers, { ...ctx, teTrailers })
      .filter(([k]) => k.toLowerCase() === 'te')
      .map(([, v]) => v);
  };
  t.same(te(['te', 'trailers'], true), ['trailers'], 'kept for an HTTP/2 app');
  t.same(te(['TE', 'gzip, Trailers;q=1'], true), ['trailers'], 'only the trailers token');
  t.same(te(['te', 'gzip'], true), [], 'other codings never');
  t.same(te(['te', 'trailers'], false), [], 'never for an HTTP/1.1 app (hop-by-hop)');
  t.same(te(['connection', 'te', 'te', 'trailers'], true), ['trailers'], 'also when named in Connection');
});

t.test('gRPC answers are not translated, headers included', async (t) => {
  const config = parseRelayConfig(
    `apps:
  - { name: svc, externalUrl: "https://svc.example.com/", internalUrl: "http://10.0.0.7:50051/", backendProtocol: h2c, translateLinks: true }
`,
    'relay.yaml',
  );
  const app = config.apps[0]!;
  const location: [string, string] = ['location', 'http://10.0.0.7:50051/x'];
  for (const type of ['application/grpc', 'application/grpc+proto', 'Application/GRPC-web']) {
    const out = translateResponse(config, app, [['content-type', type], location], 'POST', 200);
    t.same(out.headers, [['content-type', type], location], `${type}: headers as sent`);
    t.equal(out.body, undefined, `${type}: body as sent`);
  }
  const html = translateResponse(config, app, [['content-type', 'text/html'], location], 'GET', 200);
  t.same(html.headers[1], ['location', 'https://svc.example.com/x'], 'other answers still are');
  t.ok(html.body, 'and their HTML bodies');
});

t.test('the inline frame carries trailers; malformed ones are refused', async (t) => {
  const head = { type: 'response' as const, id: 'r1', status: 200, headers: [] as HeaderPairs };
  const frame = encodeInlineResponse({ ...head, trailers: [['grpc-status', '0']] }, Buffer.from('x'));
  t.same(decodeInlineResponse(frame)?.head.trailers, [['grpc-status', '0']]);
  t.equal(decodeInlineResponse(encodeInlineResponse(head, Buffer.alloc(0)))?.head.trailers, undefined);
  const bad = encodeInlineResponse(
    { ...head, trailers: [['grpc-status', 0]] as unknown as HeaderPairs },
    Buffer.alloc(0),
  );
  t.equal(decodeInlineResponse(bad), undefined, 'a trailer value that is not a string');
});

t.test('refusals as gRPC statuses', async (t) => {
  const table: [number, number][] = [
    [400, GRPC_STATUS.INTERNAL],
    [401, GRPC_STATUS.UNAUTHENTICATED],
    [403, GRPC_STATUS.PERMISSION_DENIED],
    [404, GRPC_STATUS.UNIMPLEMENTED],
    [408, GRPC_STATUS.DEADLINE_EXCEEDED],
    [413, GRPC_STATUS.RESOURCE_EXHAUSTED],
    [429, GRPC_STATUS.UNAVAILABLE],
    [500, GRPC_STATUS.INTERNAL],
    [502, GRPC_STATUS.UNAVAILABLE],
    [503, GRPC_STATUS.UNAVAILABLE],
    [504, GRPC_STATUS.DEADLINE_EXCEEDED],
  ];
  for (const [http, code] of table) t.equal(grpcStatusOf(http), code, `HTTP ${http}`);
  t.equal(grpcMessage('plain text (ok)'), 'plain text (ok)');
  t.equal(grpcMessage('100% sure'), '100%25 sure', 'percent itself is encoded');
  t.equal(grpcMessage('line\nbreak'), 'line%0Abreak', 'control characters are encoded');
  t.equal(grpcMessage('café'), 'caf%C3%A9', 'UTF-8 bytes are encoded');
});
