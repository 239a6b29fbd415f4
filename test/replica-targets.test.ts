// Which relays a connector dials and whom it asks, as tables: the replica set (or
// none, from a relay before replicas), the registration URL, and which errors send
// a config pull or renewal on to the next replica.
import t from 'tap';
import { ProxyctlError } from '../src/errors.js';
import type { ReplicaInfo } from '../src/protocol/connector-api.js';
import { answersNot, askOrder, relayTargets } from '../src/connector/replicas.js';

const REG = 'https://relay.example.com:8444';
const A: ReplicaInfo = { id: 'a', url: 'https://a.internal:8444/' };
const B: ReplicaInfo = { id: 'b', url: 'https://b.internal:8444/' };
const AT_REG: ReplicaInfo = { id: 'r', url: 'https://relay.example.com:8444/' };

t.test('the relays a connector keeps channels to', async (t) => {
  const cases: [string, ReplicaInfo[] | undefined, boolean, [string, string | undefined][]][] = [
    ['no set (a relay from before replicas): the registration URL', undefined, true, [[REG, undefined]]],
    ['an empty set: the registration URL', [], true, [[REG, undefined]]],
    ['a set of one answering at the registration URL: dialled as registered', [A], true, [[REG, 'a']]],
    ['a set of one, the registration URL silent: its own URL', [A], false, [[A.url, 'a']]],
    [
      'two replicas: each at its own URL',
      [A, B],
      true,
      [
        [A.url, 'a'],
        [B.url, 'b'],
      ],
    ],
    [
      'two replicas, one registered with: the same address',
      [AT_REG, B],
      true,
      [
        [AT_REG.url, 'r'],
        [B.url, 'b'],
      ],
    ],
  ];
  for (const [what, set, answered, want] of cases) {
    t.same(
      relayTargets(set, REG, answered).map((x) => [x.url, x.replicaId]),
      want,
      what,
    );
  }
  t.same(
    relayTargets([AT_REG, B], REG, true).map((x) => x.origin),
    ['https://relay.example.com:8444', 'https://b.internal:8444'],
    'keyed by origin, so a replica met through its registration URL is one relay',
  );
});

t.test('whom a config pull or renewal asks, in turn', async (t) => {
  t.same(
    askOrder(REG, undefined, () => false),
    [REG],
    'the registration URL alone while no set is known',
  );
  t.same(
    askOrder(REG, [A, B], () => false),
    [REG, A.url, B.url],
    'then every replica',
  );
  t.same(
    askOrder(REG, [A, B], (o) => o === 'https://b.internal:8444'),
    [REG, B.url, A.url],
    'replicas with an open channel first',
  );
  t.same(
    askOrder(REG, [AT_REG, B], () => true),
    [REG, B.url],
    'the registration URL is not asked twice',
  );
});

t.test('errors after which the next replica is asked', async (t) => {
  const refused = (status: number) => new ProxyctlError('ERR_RELAY_REFUSED', 'refused', { status });
  const cases: [string, unknown, boolean, boolean][] = [
    ['unreachable', new ProxyctlError('ERR_RELAY_UNREACHABLE', 'x'), true, true],
    ['a load balancer with nothing behind it (503)', refused(503), true, true],
    ['a gateway error (502)', refused(502), true, true],
    ['a gateway timeout (504)', refused(504), true, true],
    ['a relay refusal (400)', refused(400), true, false],
    ['a server error (500)', refused(500), true, false],
    ['revoked', new ProxyctlError('ERR_CERT_REVOKED', 'x', { status: 403 }), false, false],
    ['unknown', new ProxyctlError('ERR_CERT_UNKNOWN', 'x', { status: 401 }), false, false],
    ['untrusted, at the registration URL', new ProxyctlError('ERR_RELAY_UNTRUSTED', 'x'), true, false],
    ['untrusted, another replica', new ProxyctlError('ERR_RELAY_UNTRUSTED', 'x'), false, true],
    ['not ours', new Error('boom'), false, false],
  ];
  for (const [what, err, atRegistration, next] of cases) t.equal(answersNot(err, atRegistration), next, what);
});
