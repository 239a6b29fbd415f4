// One definition of addresses and ranges for every room (edge limits, trusted
// proxies, Conditional Access locations, the provider's throttle, loopback
// checks): every spelling of an address is one address, and each parser
// accepts the same things wherever it is used.
import t from 'tap';
import {
  AddressSet,
  canonicalAddress,
  cidrsOverlap,
  isLoopbackHost,
  networkOf,
  parseCidr,
  parseForwardedAddress,
} from '../src/net/address.js';
import { TrustedProxies } from '../src/relay/edge/limits.js';
import { inLocation } from '../src/policy/evaluate.js';
import { parseRelayConfig } from '../src/config/relay-config.js';

t.test('one spelling per address; networks as /24 and /64', async (t) => {
  const table: [string, string, string][] = [
    ['203.0.113.7', '203.0.113.7', '203.0.113.0/24'],
    [' 203.0.113.7 ', '203.0.113.7', '203.0.113.0/24'],
    ['::ffff:203.0.113.7', '203.0.113.7', '203.0.113.0/24'],
    ['::FFFF:cb00:7107', '203.0.113.7', '203.0.113.0/24'],
    ['0:0:0:0:0:ffff:cb00:7107', '203.0.113.7', '203.0.113.0/24'],
    ['2001:db8::1', '2001:db8::1', '2001:db8::/64'],
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1', '2001:db8::/64'],
    ['2001:db8:0:0:ffff:1:2:3', '2001:db8::ffff:1:2:3', '2001:db8::/64'],
    ['2001:db8:1:2::9', '2001:db8:1:2::9', '2001:db8:1:2::/64'],
    ['fe80::1%eth0', 'fe80::1', 'fe80::/64'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221', '64:ff9b::/64'],
    ['::', '::', '::/64'],
    ['0:0:0:0:0:0:0:1', '::1', '::/64'],
    ['not an address', 'not an address', 'not an address'],
    ['01.2.3.4', '01.2.3.4', '01.2.3.4'],
  ];
  for (const [input, canonical, network] of table) {
    t.equal(canonicalAddress(input), canonical, `canonical ${JSON.stringify(input)}`);
    t.equal(networkOf(input), network, `network ${JSON.stringify(input)}`);
  }
});

t.test('parseCidr: ranges and single addresses, strict prefixes', async (t) => {
  const ok: [string, string, number, string][] = [
    ['10.0.0.0/8', '10.0.0.0', 8, 'ipv4'],
    ['10.0.0.5', '10.0.0.5', 32, 'ipv4'],
    ['2001:db8::/32', '2001:db8::', 32, 'ipv6'],
    ['2001:DB8:0::/32', '2001:db8::', 32, 'ipv6'],
    ['::1', '::1', 128, 'ipv6'],
    ['::ffff:10.0.0.0/104', '10.0.0.0', 8, 'ipv4'],
    ['::ffff:a00:0/104', '10.0.0.0', 8, 'ipv4'],
    ['0.0.0.0/0', '0.0.0.0', 0, 'ipv4'],
  ];
  for (const [text, addr, bits, family] of ok) t.same(parseCidr(text), { addr, bits, family }, text);
  for (const bad of [
    '10.0.0.0/33',
    '10.0.0.0/08',
    '2001:db8::/129',
    '::ffff:10.0.0.0/95',
    'fe80::1%eth0/64',
    '10.0.0/8',
    '01.0.0.0/8',
    'proxy.example.com',
    '',
    '/8',
    '10.0.0.0/',
    '10.0.0.0/-1',
    '10.0.0.0/8/8',
    '1.2.3.4 /8',
  ]) {
    t.equal(parseCidr(bad), undefined, `refused: ${JSON.stringify(bad)}`);
  }
  t.ok(cidrsOverlap(parseCidr('10.0.0.0/8')!, parseCidr('10.1.0.0/16')!));
  t.ok(cidrsOverlap(parseCidr('10.1.0.0/16')!, parseCidr('10.0.0.0/8')!));
  t.notOk(cidrsOverlap(parseCidr('10.0.0.0/8')!, parseCidr('11.0.0.0/8')!));
  t.notOk(cidrsOverlap(parseCidr('10.0.0.0/8')!, parseCidr('::ffff:0:0/96')!) && false);
});

t.test('AddressSet, TrustedProxies and a named location agree on every spelling', async (t) => {
  const ranges = ['10.0.0.0/8', '2001:db8::/32', '192.0.2.10'];
  const set = new AddressSet(ranges);
  const proxies = new TrustedProxies(ranges);
  const location = { name: 'office', cidrs: ranges, countries: [] };
  const table: [string, boolean][] = [
    ['10.1.2.3', true],
    ['::ffff:10.1.2.3', true],
    ['::ffff:a01:203', true],
    ['192.0.2.10', true],
    ['::ffff:192.0.2.10', true],
    ['2001:DB8::5', true],
    ['2001:0db8:0000::5', true],
    ['2001:db9::1', false],
    ['11.0.0.1', false],
    ['192.0.2.11', false],
    ['', false],
    ['junk', false],
    ['fe80::1%eth0', false],
  ];
  for (const [address, inside] of table) {
    t.equal(set.has(address), inside, `AddressSet ${address}`);
    t.equal(proxies.isTrusted(address), inside, `TrustedProxies ${address}`);
    t.equal(inLocation(location, { ip: address, country: undefined }), inside, `named location ${address}`);
  }
  t.throws(() => new AddressSet(['10.0.0.0/33']), RangeError);
});

t.test('config: trustedProxies and namedLocations accept the same ranges', async (t) => {
  for (const range of ['10.0.0.0/8', '192.0.2.10', '2001:db8::/32', '::1', '::ffff:10.0.0.0/104']) {
    t.doesNotThrow(
      () =>
        parseRelayConfig(
          `limits: { trustedProxies: ["${range}"] }\nnamedLocations: [{ name: office, cidrs: ["${range}"] }]\n`,
          'relay.yaml',
        ),
      range,
    );
  }
  for (const range of ['10.0.0.0/33', '10.0.0.0/08', 'proxy.example.com', 'fe80::1%eth0']) {
    t.throws(
      () => parseRelayConfig(`limits: { trustedProxies: ["${range}"] }\n`, 'relay.yaml'),
      { code: 'ERR_CONFIG_INVALID' },
      `trustedProxies refuses ${range}`,
    );
    t.throws(
      () => parseRelayConfig(`namedLocations: [{ name: office, cidrs: ["${range}"] }]\n`, 'relay.yaml'),
      { code: 'ERR_CONFIG_INVALID' },
      `namedLocations refuses ${range}`,
    );
  }
});

t.test('X-Forwarded-For entries and loopback hosts', async (t) => {
  const fwd: [string, string | undefined][] = [
    ['203.0.113.7', '203.0.113.7'],
    ['203.0.113.7:8080', '203.0.113.7'],
    ['[2001:db8::1]', '2001:db8::1'],
    ['[2001:DB8::1]:443', '2001:db8::1'],
    ['::ffff:203.0.113.7', '203.0.113.7'],
    ['203.0.113.7:70000', undefined],
    ['fe80::1%eth0', undefined],
    ['unknown', undefined],
    ['_hidden', undefined],
    ['', undefined],
  ];
  for (const [entry, want] of fwd)
    t.equal(parseForwardedAddress(entry), want, `X-Forwarded-For ${JSON.stringify(entry)}`);
  for (const h of [
    'localhost',
    'app.localhost',
    '127.0.0.1',
    '127.9.9.9',
    '::1',
    '[::1]',
    '0:0:0:0:0:0:0:1',
    '::ffff:127.0.0.1',
    'LOCALHOST',
  ]) {
    t.ok(isLoopbackHost(h), `loopback ${h}`);
  }
  for (const h of ['10.0.0.1', '128.0.0.1', '::2', 'localhost.example.com', 'example.com', '127.0.0.1.nip.io', '']) {
    t.notOk(isLoopbackHost(h), `not loopback ${h}`);
  }
});
