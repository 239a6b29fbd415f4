// Location lookups with the databases the packages ship: well-known public
// addresses get an ASN, an organisation, a city and (where geoip-country knows
// it) the country Conditional Access uses; non-public and invalid addresses get
// nothing; loading happens in the background and a broken file is skipped.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GeoLocator, NO_GEO, defaultAsnDatabases, defaultCityDatabases, isPublicAddress } from '../src/risk/geo.js';
import { RangeTable, addressKey, cidrBounds } from '../src/risk/ranges.js';
import { parseCidr } from '../src/net/address.js';
import { countryOf } from '../src/policy/context.js';

const geo = new GeoLocator({ cityDatabases: defaultCityDatabases(), asnDatabases: defaultAsnDatabases() });

t.test('the first lookup answers at once, before the databases are in', async (t) => {
  t.equal(geo.stats.state, 'idle', 'nothing loaded before first use');
  const began = performance.now();
  const first = geo.lookup('8.8.8.8');
  const ms = performance.now() - began;
  t.equal(geo.stats.state, 'loading', 'the lookup started the load');
  t.equal(first.city, null, 'no city yet');
  t.equal(first.asn, null, 'no ASN yet');
  t.equal(first.country, 'US', 'the country comes from the same source as Conditional Access');
  t.ok(ms < 2000, `first lookup took ${Math.round(ms)} ms (geoip-country's own first read included)`);
});

t.test('well-known public addresses', async (t) => {
  const stats = await geo.start();
  t.equal(stats.state, 'ready');
  t.same(stats.failed, []);
  t.ok(stats.asnRanges > 100_000, `${stats.asnRanges} ASN ranges`);
  t.comment(
    `load ${stats.loadMs} ms; city MMDB ${(stats.cityBytes / 2 ** 20).toFixed(0)} MiB; ` +
      `ASN tables ${(stats.asnBytes / 2 ** 20).toFixed(1)} MiB for ${stats.asnRanges} ranges, ${stats.asnNetworks} networks`,
  );

  const google = geo.lookup('8.8.8.8');
  t.match(google, { country: 'US', asn: 15169, network: /Google/ });
  t.type(google.city, 'string');
  t.type(google.latitude, 'number');
  t.type(google.longitude, 'number');

  const cloudflare = geo.lookup('1.1.1.1');
  t.match(cloudflare, { asn: 13335, network: /Cloudflare/ });
  t.equal(cloudflare.country, countryOf('1.1.1.1') ?? null, 'country exactly as Conditional Access sees it');

  const v6 = geo.lookup('2001:4860:4860::8888');
  t.match(v6, { country: 'US', asn: 15169, network: /Google/ });
  t.type(v6.latitude, 'number');
  t.match(geo.lookup('2606:4700:4700::1111'), { asn: 13335 });

  t.same(geo.lookup('::ffff:8.8.8.8'), google, 'an IPv4-mapped spelling is the IPv4 address');
  t.same(geo.lookup(' 8.8.8.8 '), google);
  t.same(geo.lookup('2001:4860:4860:0:0:0:0:8888'), v6, 'any IPv6 spelling');

  for (const ip of ['8.8.8.8', '81.2.69.160', '2001:4860:4860::8888', '1.1.1.1']) {
    t.equal(geo.lookup(ip).country, countryOf(ip) ?? null, `${ip}: log and policy agree on the country`);
  }
});

t.test('private, loopback, link-local and invalid addresses: nothing', async (t) => {
  await geo.start();
  const table = [
    '10.1.2.3',
    '172.16.5.4',
    '192.168.1.1',
    '127.0.0.1',
    '169.254.10.10',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '::1',
    '::',
    'fe80::1',
    'fe80::1%eth0',
    'fd00::1',
    'ff02::1',
    '2001:db8::1',
    '::ffff:10.0.0.1',
    'not an address',
    '',
    '8.8.8.8.8',
    '8.8.8.8/32',
    '1'.repeat(10_000),
    '8.8.8.8\u0000',
  ];
  for (const ip of table) {
    t.same(geo.lookup(ip), NO_GEO, `${JSON.stringify(ip.slice(0, 20))}: all null`);
    t.notOk(isPublicAddress(ip));
  }
  t.same(geo.lookup(null), NO_GEO);
  t.same(geo.lookup(undefined), NO_GEO);
  t.ok(isPublicAddress('8.8.8.8') && isPublicAddress('2001:4860:4860::8888'));
});

t.test('newer databases: an ASN CSV of either layout, a broken file skipped', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'proxyctl-geo-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const dotted = path.join(dir, 'asn-ipv4.csv');
  writeFileSync(
    dotted,
    [
      '8.8.4.0,8.8.4.255,64500,"Example ""Quoted"", Inc."',
      '8.8.8.0,8.8.8.255,64501,Example Two',
      'garbage line',
      '9.9.9.9,9.9.9.1,64502,backwards range',
      '1.1.1.0,1.1.1.255,99999999999,too big an ASN',
      '',
    ].join('\r\n'),
  );
  const numeric = path.join(dir, 'asn-ipv6-num.csv');
  // 2001:4860::/32 as numbers.
  const start = BigInt('0x20014860') << 96n;
  const end = start + (1n << 96n) - 1n;
  writeFileSync(numeric, `${start},${end},64510,Example Six\n1,2\n`);
  const broken = path.join(dir, 'city.mmdb');
  writeFileSync(broken, 'not an mmdb');
  const custom = new GeoLocator({
    cityDatabases: [broken, path.join(dir, 'missing.mmdb')],
    asnDatabases: [dotted, numeric],
  });
  const stats = await custom.start();
  t.same(stats.failed, [broken, path.join(dir, 'missing.mmdb')], 'unloadable files are named');
  t.equal(stats.asnRanges, 3);
  t.match(custom.lookup('8.8.4.4'), { asn: 64500, network: 'Example "Quoted", Inc.', city: null, country: 'US' });
  t.match(custom.lookup('8.8.8.8'), { asn: 64501, network: 'Example Two' });
  t.match(custom.lookup('2001:4860:4860::8888'), { asn: 64510, network: 'Example Six' });
  t.match(custom.lookup('9.9.9.9'), { asn: null });
  t.match(custom.lookup('1.1.1.1'), { asn: null });
  t.same(await custom.start(), stats, 'start is idempotent');

  const none = new GeoLocator({ cityDatabases: [], asnDatabases: [] });
  await none.start();
  t.same(none.lookup('8.8.8.8'), { ...NO_GEO, country: 'US' }, 'without databases, the country alone');
});

t.test('range tables', async (t) => {
  const bounds = (c: string) => cidrBounds(parseCidr(c)!).map((k) => Array.from(k));
  t.same(bounds('192.0.2.0/24'), [[0xc0000200], [0xc00002ff]]);
  t.same(bounds('192.0.2.77/31'), [[0xc000024c], [0xc000024d]]);
  t.same(bounds('10.0.0.0/1'), [[0], [0x7fffffff]]);
  t.same(bounds('2001:db8::/33'), [
    [0x20010db8, 0, 0, 0],
    [0x20010db8, 0x7fffffff, 0xffffffff, 0xffffffff],
  ]);
  t.same(bounds('2001:db8::1/128'), [
    [0x20010db8, 0, 0, 1],
    [0x20010db8, 0, 0, 1],
  ]);
  const table = new RangeTable(1);
  const add = (c: string, v: number) => {
    const [s, e] = cidrBounds(parseCidr(c)!);
    table.add(s, e, v);
  };
  add('192.0.2.128/25', 2);
  add('192.0.2.0/25', 1);
  add('198.51.100.0/24', 3);
  table.build(true);
  t.equal(table.size, 2, 'adjacent ranges merged after sorting');
  t.equal(table.find(addressKey('192.0.2.0')!), 1);
  t.equal(table.find(addressKey('192.0.2.255')!), 1);
  t.equal(table.find(addressKey('192.0.3.0')!), undefined);
  t.equal(table.find(addressKey('0.0.0.0')!), undefined);
  t.equal(table.find(addressKey('255.255.255.255')!), undefined);
  t.equal(table.find(addressKey('2001:db8::1')!), undefined, 'another family never matches');
  t.equal(addressKey('nonsense'), undefined);
});
