// Response headers on their way from the backend to the user: hop-by-hop
// headers, and those the backend's Connection header names, never leave the
// relay; everything else keeps its name, order and duplicates.
import t from 'tap';
import { responseHeadersForClient } from '../src/relay/edge/headers.js';
import type { HeaderPairs } from '../src/protocol/connector-api.js';

const names = (flat: string[]) => flat.filter((_, i) => i % 2 === 0);

t.test('hop-by-hop headers are dropped; the rest keep name case, order and duplicates', async (t) => {
  const pairs: HeaderPairs = [
    ['Content-Type', 'text/html'],
    ['Connection', 'keep-alive'],
    ['Keep-Alive', 'timeout=5'],
    ['Set-Cookie', 'a=1'],
    ['Transfer-Encoding', 'chunked'],
    ['TE', 'trailers'],
    ['Trailer', 'x-sum'],
    ['Upgrade', 'h2c'],
    ['Proxy-Authenticate', 'Basic'],
    ['Set-Cookie', 'b=2'],
    ['X-Custom', 'kept'],
  ];
  t.same(responseHeadersForClient(pairs), [
    'Content-Type',
    'text/html',
    'Set-Cookie',
    'a=1',
    'Set-Cookie',
    'b=2',
    'X-Custom',
    'kept',
  ]);
});

t.test('headers the backend names in Connection are dropped, wherever they stand', async (t) => {
  const before: HeaderPairs = [
    ['X-Secret', 's'],
    ['x-trace', '1'],
    ['Connection', 'X-Secret, x-TRACE'],
    ['Date', 'd'],
  ];
  t.same(names(responseHeadersForClient(before)), ['Date'], 'named before the Connection header');
  const after: HeaderPairs = [
    ['Connection', 'close'],
    ['Connection', ' x-secret '],
    ['Date', 'd'],
    ['X-Secret', 's'],
  ];
  t.same(
    names(responseHeadersForClient(after)),
    ['Date'],
    'named after it, in a second Connection header, with spaces',
  );
  const none: HeaderPairs = [
    ['Date', 'd'],
    ['X-Other', 'o'],
  ];
  t.same(responseHeadersForClient(none), ['Date', 'd', 'X-Other', 'o'], 'nothing named: nothing more dropped');
});

t.test('an upgrade keeps its Upgrade and Connection headers, and still drops other named ones', async (t) => {
  const pairs: HeaderPairs = [
    ['Upgrade', 'websocket'],
    ['Connection', 'Upgrade, X-Hop'],
    ['X-Hop', 'h'],
    ['Sec-WebSocket-Accept', 'abc'],
    ['Keep-Alive', 'x'],
  ];
  t.same(responseHeadersForClient(pairs, true), [
    'Upgrade',
    'websocket',
    'Connection',
    'Upgrade, X-Hop',
    'Sec-WebSocket-Accept',
    'abc',
  ]);
});
