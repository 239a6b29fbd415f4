// What every Store implementation must do, written against the interface only, so
// the same body runs against SQLite and PostgreSQL: storeContract(t, newStore).
import type { Test } from 'tap';
import type { Store, StoreDump, StoreTopic } from '../../src/store/index.js';
import { waitFor } from './wait.js';
import { signInRecord } from './sign-ins.js';

/**
 * Makes fresh, empty backing data for one test (cleaned up by the test's teardown) and
 * returns an opener for it: each call is another connection, as another process
 * (the admin CLI, a second relay) would have.
 */
export type NewStore = (t: Test) => () => Promise<Store>;

const HOUR = 3600_000;

async function opened(t: Test, open: () => Promise<Store>): Promise<Store> {
  const s = await open();
  t.teardown(() => s.close());
  return s;
}

const connector = (id: string, name: string, serial: string, issuedAt = 1_000) => ({
  id,
  name,
  group: 'default',
  actor: 'test',
  serial,
  issuedAt,
  notAfter: issuedAt + 24 * HOUR,
});

const user = (username: string, extra: Partial<Parameters<Store['users']['put']>[0]> = {}) => ({
  username,
  passwordHash: `hash-of-${username}`,
  email: null,
  name: null,
  groups: [],
  roles: [],
  totpSecret: null,
  createdAt: 1_000,
  ...extra,
});

export function storeContract(t: Test, newStore: NewStore): void {
  t.test('connectors: register, unique names, touch, list', async (t) => {
    const s = await opened(t, newStore(t));
    const gen = s.generation;
    const a = await s.connectors.register(connector('c-a', 'edge', 'AA01'));
    t.match(a, {
      id: 'c-a',
      name: 'edge',
      group: 'default',
      createdBy: 'test',
      createdAt: 1_000,
      version: null,
      lastSeen: null,
      revokedAt: null,
    });
    t.ok(s.generation > gen, 'a registration moves the generation');
    t.match(await s.connectors.getCertificate('AA01'), {
      serial: 'AA01',
      connectorId: 'c-a',
      kind: 'register',
      revokedAt: null,
      notAfter: 1_000 + 24 * HOUR,
    });
    t.equal(await s.connectors.getCertificate('FF00'), undefined);
    t.equal(await s.connectors.get('c-none'), undefined);

    await t.rejects(
      s.connectors.register(connector('c-b', 'EDGE', 'AA02')),
      { code: 'ERR_CONNECTOR_NAME_TAKEN' },
      'a live name is taken, ignoring case',
    );
    await t.rejects(
      s.connectors.register(connector('c-b', 'C-A', 'AA02')),
      { code: 'ERR_CONNECTOR_NAME_TAKEN' },
      'a name may not be a connector id',
    );
    t.equal(await s.connectors.getCertificate('AA02'), undefined, 'a refused registration stores nothing');
    t.same(
      (await s.connectors.list()).map((c) => c.id),
      ['c-a'],
    );

    await s.connectors.touch('c-a', '1.2.3', 5_000);
    t.match(await s.connectors.get('c-a'), { lastSeen: 5_000, version: '1.2.3' });
    await s.connectors.touch('c-a', null, 6_000);
    t.match(await s.connectors.get('c-a'), { lastSeen: 6_000, version: '1.2.3' }, 'no version keeps the last one');

    await s.connectors.register(connector('c-b', 'other', 'BB01', 2_000));
    t.match(
      await s.connectors.list(),
      [
        { id: 'c-a', certificates: 1, certificateExpires: 1_000 + 24 * HOUR },
        { id: 'c-b', certificates: 1 },
      ],
      'listed in registration order with their certificates',
    );
    t.match(
      await s.audit.list(),
      [
        { action: 'connector.register', connectorId: 'c-b', actor: 'test', details: { name: 'other', serial: 'BB01' } },
        {
          action: 'connector.register',
          connectorId: 'c-a',
          at: 1_000,
          details: { name: 'edge', group: 'default', serial: 'AA01' },
        },
      ],
      'audited, newest first',
    );
    t.equal((await s.audit.list(1)).length, 1, 'audit list is limited');
  });

  t.test('connectors: renewal grace, retirement, revocation', async (t) => {
    const s = await opened(t, newStore(t));
    await s.connectors.register(connector('c-a', 'edge', 'AA01'));
    let gen = s.generation;
    await s.connectors.recordRenewal({
      connectorId: 'c-a',
      oldSerial: 'AA01',
      serial: 'AA02',
      issuedAt: 2_000,
      notAfter: 2_000 + 24 * HOUR,
      graceUntil: 10_000,
    });
    t.ok(s.generation > gen, 'a renewal moves the generation');
    t.match(
      await s.connectors.getCertificate('AA01'),
      { revokedAt: 10_000 },
      'the old certificate is good until the grace ends',
    );
    t.match(await s.connectors.getCertificate('AA02'), { kind: 'renew', revokedAt: null, connectorId: 'c-a' });
    t.match((await s.connectors.list())[0], { certificates: 2, certificateExpires: 2_000 + 24 * HOUR });
    t.match((await s.audit.list(1))[0], {
      action: 'connector.renew',
      actor: 'connector:c-a',
      details: { oldSerial: 'AA01', serial: 'AA02', oldValidUntil: 10_000 },
    });
    t.same(
      [...(await s.connectors.revokedAmong(['AA01', 'AA02', 'FF00']))],
      ['FF00'],
      'a certificate in its grace is not a revoked connector; unknown ones are',
    );

    gen = s.generation;
    t.equal(await s.connectors.retireSuperseded('c-a', 3_000), 1, 'using the new certificate ends the grace');
    t.ok(s.generation > gen);
    t.match(await s.connectors.getCertificate('AA01'), { revokedAt: 3_000 });
    t.match((await s.audit.list(1))[0], { action: 'connector.retire', details: { serials: ['AA01'] } });
    t.equal(await s.connectors.retireSuperseded('c-a', 4_000), 0, 'nothing left to retire');
    t.equal((await s.audit.list(1))[0]?.action, 'connector.retire', 'and nothing audited');

    gen = s.generation;
    const revoked = await s.connectors.revoke('edge', 'admin', 5_000);
    t.match(revoked, { id: 'c-a', revokedAt: 5_000 });
    t.ok(s.generation > gen);
    t.match(await s.connectors.getCertificate('AA02'), { revokedAt: 5_000 });
    t.match(await s.connectors.getCertificate('AA01'), { revokedAt: 3_000 }, 'an earlier revocation time stays');
    t.match((await s.audit.list(1))[0], {
      action: 'connector.revoke',
      actor: 'admin',
      connectorId: 'c-a',
      details: { name: 'edge', certificates: 1 },
    });
    t.same(
      [...(await s.connectors.revokedAmong(['AA01', 'AA02']))].sort(),
      ['AA01', 'AA02'],
      'every certificate of a revoked connector',
    );
    t.match(await s.connectors.revoke('c-a', 'admin', 6_000), { revokedAt: 5_000 }, 'revoking again changes nothing');
    t.equal((await s.audit.list()).filter((a) => a.action === 'connector.revoke').length, 1);
    await t.rejects(
      s.connectors.recordRenewal({
        connectorId: 'c-a',
        oldSerial: 'AA02',
        serial: 'AA03',
        issuedAt: 7_000,
        notAfter: 8_000,
        graceUntil: 7_500,
      }),
      { code: 'ERR_CERT_REVOKED' },
      'a revoked connector cannot renew',
    );
    t.equal(await s.connectors.getCertificate('AA03'), undefined);
    await t.rejects(
      s.connectors.recordRenewal({
        connectorId: 'c-none',
        oldSerial: 'x',
        serial: 'AA04',
        issuedAt: 7_000,
        notAfter: 8_000,
        graceUntil: 7_500,
      }),
      { code: 'ERR_CERT_REVOKED' },
    );
  });

  t.test('connectors: a registration key is recorded once, with its connector', async (t) => {
    const open = newStore(t);
    const s = await opened(t, open);
    const other = await opened(t, open);
    const reg = (key: string) => ({
      key,
      publicKey: 'ab'.repeat(32),
      credential: 'cd'.repeat(32),
      certificate: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
    });
    const k1 = 'k'.repeat(43);
    t.equal(await s.connectors.registration(k1), undefined, 'an unknown key');
    await s.connectors.register({ ...connector('c-a', 'edge', 'AA01'), registration: reg(k1) });
    t.same(
      await other.connectors.registration(k1),
      { ...reg(k1), connectorId: 'c-a', createdAt: 1_000 },
      'recorded with the connector, read from another connection',
    );
    const audited = (await s.audit.list()).length;
    await t.rejects(
      other.connectors.register({ ...connector('c-b', 'other', 'AA02', 2_000), registration: reg(k1) }),
      { code: 'ERR_CONFLICT', status: 409, details: { reason: 'registration-key-used' } },
      'a key is used once, whatever the rest',
    );
    await t.rejects(
      s.connectors.register({ ...connector('c-b', 'edge', 'AA02', 2_000), registration: reg(k1) }),
      { code: 'ERR_CONFLICT', details: { reason: 'registration-key-used' } },
      'the key is checked before the name',
    );
    t.equal(await s.connectors.get('c-b'), undefined, 'a refused key writes no connector');
    t.equal(await s.connectors.getCertificate('AA02'), undefined, 'no certificate');
    t.equal((await s.audit.list()).length, audited, 'and no audit row');

    // Two attempts with one key at once, through two connections (two relays): one connector.
    const k2 = 'z'.repeat(43);
    const both = await Promise.allSettled([
      s.connectors.register({ ...connector('c-x', 'x1', 'X1', 3_000), registration: reg(k2) }),
      other.connectors.register({ ...connector('c-y', 'x2', 'X2', 3_000), registration: reg(k2) }),
    ]);
    t.equal(both.filter((r) => r.status === 'fulfilled').length, 1, 'one of two racing attempts is recorded');
    t.match(
      both.find((r) => r.status === 'rejected'),
      { reason: { code: 'ERR_CONFLICT', details: { reason: 'registration-key-used' } } },
      'the other is told the key is used',
    );
    const winner = (await s.connectors.registration(k2))?.connectorId;
    t.ok(winner === 'c-x' || winner === 'c-y', 'the key names the recorded one');
    t.same(
      (await s.connectors.list()).map((c) => c.id),
      ['c-a', winner],
      'no connector without its key, none twice',
    );
    await s.connectors.register(connector('c-n', 'plain', 'N1', 4_000));
    t.equal((await s.connectors.list()).length, 3, 'a registration without a key records none');
  });

  t.test('connectors: find by id or name, refusing ambiguity', async (t) => {
    const s = await opened(t, newStore(t));
    await s.connectors.register(connector('c-1', 'edge', 'A1', 1_000));
    await s.connectors.revoke('c-1', 'admin', 1_500);
    t.equal(
      (await s.connectors.find('edge')).id,
      'c-1',
      'a revoked connector is found by name when no live one has it',
    );
    await s.connectors.register(connector('c-2', 'edge', 'A2', 2_000));
    t.equal(
      (await s.connectors.find('edge')).id,
      'c-2',
      'the name is free again after a revocation, and means the live one',
    );
    await s.connectors.revoke('edge', 'admin', 2_500);
    t.equal((await s.connectors.find('edge')).id, 'c-2', 'then the latest revoked one');
    t.equal((await s.connectors.find('c-1')).id, 'c-1', 'by id');

    // A later connector whose id is an earlier one's name: the bare word is ambiguous.
    await s.connectors.register(connector('x-name', 'first', 'B1', 3_000));
    await s.connectors.register(connector('first', 'second', 'B2', 4_000));
    await t.rejects(s.connectors.find('first'), { code: 'ERR_USAGE' });
    t.equal((await s.connectors.find('id:first')).id, 'first');
    t.equal((await s.connectors.find('name:first')).id, 'x-name');
    await t.rejects(s.connectors.find('nobody'), { code: 'ERR_CONNECTOR_NOT_FOUND' });
    await t.rejects(s.connectors.find('id:x-nobody'), { code: 'ERR_CONNECTOR_NOT_FOUND' });
    await t.rejects(s.connectors.find('name:c-1'), { code: 'ERR_CONNECTOR_NOT_FOUND' }, 'name: does not match ids');
    await t.rejects(s.connectors.revoke('nobody', 'admin'), { code: 'ERR_CONNECTOR_NOT_FOUND' });
  });

  t.test('connectors: a revoked connector is deleted from the listings, its certificates stay revoked', async (t) => {
    const open = newStore(t);
    const s = await opened(t, open);
    const other = await opened(t, open);
    await s.connectors.register(connector('c-a', 'edge', 'AA01', 1_000));
    const audited = async () => (await s.audit.list(1_000)).length;
    let rows = await audited();
    await t.rejects(
      s.connectors.delete('edge', 'admin', 2_000),
      { code: 'ERR_CONNECTOR_NOT_REVOKED', status: 409 },
      'a connector in service is not deleted',
    );
    t.equal(await audited(), rows, 'nor audited');
    t.same(
      (await s.connectors.list()).map((c) => c.id),
      ['c-a'],
    );

    await s.connectors.revoke('edge', 'admin', 2_500);
    rows = await audited();
    const seen: (ReadonlySet<StoreTopic> | 'all')[] = [];
    const stop = other.onChange((topics) => seen.push(topics), 10);
    t.teardown(stop);
    const gen = s.generation;
    t.match(await s.connectors.delete('edge', 'admin', 3_000), { id: 'c-a', name: 'edge', revokedAt: 2_500 });
    t.ok(s.generation > gen, 'a deletion moves the generation');
    t.equal(await audited(), rows + 1, 'one audit row');
    t.match(await s.audit.list(1), [
      { action: 'connector.delete', actor: 'admin', connectorId: 'c-a', at: 3_000, details: { name: 'edge' } },
    ]);
    await waitFor(() => seen.some((x) => x === 'all' || x.has('connectors')), { what: 'the deletion to be told' });
    t.pass('another connection is told');

    for (const reader of [s, other]) {
      t.same(await reader.connectors.list(), [], 'gone from the list');
      await t.rejects(reader.connectors.find('edge'), { code: 'ERR_CONNECTOR_NOT_FOUND' }, 'and from find by name');
      await t.rejects(reader.connectors.find('name:edge'), { code: 'ERR_CONNECTOR_NOT_FOUND' });
      t.match(await reader.connectors.get('c-a'), { id: 'c-a', revokedAt: 2_500 }, 'get by id still reads it');
      t.match(await reader.connectors.find('id:c-a'), { id: 'c-a' }, 'so does find by id');
      t.match(await reader.connectors.getCertificate('AA01'), { connectorId: 'c-a', revokedAt: 2_500 });
      t.same([...(await reader.connectors.revokedAmong(['AA01']))], ['AA01'], 'its certificate stays revoked');
    }

    rows = await audited();
    await t.rejects(s.connectors.delete('c-a', 'admin', 4_000), { code: 'ERR_CONNECTOR_NOT_FOUND', status: 404 });
    await t.rejects(s.connectors.delete('edge', 'admin', 4_000), { code: 'ERR_CONNECTOR_NOT_FOUND', status: 404 });
    await t.rejects(s.connectors.delete('id:c-a', 'admin', 4_000), { code: 'ERR_CONNECTOR_NOT_FOUND' });
    await t.rejects(s.connectors.delete('nobody', 'admin', 4_000), { code: 'ERR_CONNECTOR_NOT_FOUND' });
    t.equal(await audited(), rows, 'deleting twice, or nobody, audits nothing');
    t.match(
      await s.connectors.revoke('c-a', 'admin', 4_500),
      { revokedAt: 2_500 },
      'revoking it again changes nothing',
    );

    await s.connectors.register(connector('c-b', 'edge', 'BB01', 5_000));
    t.equal((await s.connectors.find('edge')).id, 'c-b', 'the name is free for a new connector');
    t.same(
      (await s.connectors.list()).map((c) => c.id),
      ['c-b'],
    );
    await t.rejects(s.connectors.delete('edge', 'admin'), { code: 'ERR_CONNECTOR_NOT_REVOKED' }, 'the new one is live');
    await t.rejects(
      s.connectors.register(connector('c-x', 'c-a', 'XX01', 5_500)),
      { code: 'ERR_CONNECTOR_NAME_TAKEN' },
      "a deleted connector's id is still no name",
    );

    // Two revoked connectors sharing a name: each deletion takes the latest one left.
    for (const [id, serial, at] of [
      ['c-d1', 'D1', 6_000],
      ['c-d2', 'D2', 7_000],
    ] as const) {
      await s.connectors.register(connector(id, 'dup', serial, at));
      await s.connectors.revoke(id, 'admin', at + 1);
    }
    t.match(await s.connectors.delete('dup', 'admin', 8_000), { id: 'c-d2' });
    t.equal((await s.connectors.find('dup')).id, 'c-d1');
    t.match(await s.connectors.delete('dup', 'admin', 8_001), { id: 'c-d1' });
    await t.rejects(s.connectors.find('dup'), { code: 'ERR_CONNECTOR_NOT_FOUND' });
    t.same(
      (await s.connectors.list()).map((c) => c.id),
      ['c-b'],
    );
  });

  t.test('managed objects: create, read, list, replace by version, upsert, remove, audited', async (t) => {
    const s = await opened(t, newStore(t));
    const audit = (action: string, actor = 'admin') => ({ actor, action, details: { note: action } });
    t.same(await s.objects.list(), []);
    t.equal(await s.objects.get('app', 'wiki'), undefined);

    const wiki = await s.objects.put('app', 'wiki', { host: 'wiki.example' }, audit('app.create'), 0, 1_000);
    t.strictSame(wiki, {
      kind: 'app',
      name: 'wiki',
      spec: { host: 'wiki.example' },
      version: 1,
      createdAt: 1_000,
      updatedAt: 1_000,
      updatedBy: 'admin',
    });
    t.strictSame(await s.objects.get('app', 'wiki'), wiki, 'read back as returned');
    t.match(await s.audit.list(1), [
      { action: 'app.create', actor: 'admin', connectorId: null, at: 1_000, details: { note: 'app.create' } },
    ]);

    for (const [kind, name] of [
      ['policy', 'b'],
      ['policy', 'a'],
      ['app', 'Wiki'],
      ['location', 'office'],
      ['connectorGroup', 'dmz'],
      ['app', 'ä'],
      ['app', 'z'],
      ['policy', 'wiki'],
    ] as const)
      await s.objects.put(kind, name, { n: name }, audit(`${kind}.create`), 0, 2_000);
    t.same(
      (await s.objects.list()).map((o) => `${o.kind}/${o.name}`),
      [
        'app/Wiki',
        'app/wiki',
        'app/z',
        'app/ä',
        'connectorGroup/dmz',
        'location/office',
        'policy/a',
        'policy/b',
        'policy/wiki',
      ],
      'by kind, then name by code point; names are exact (Wiki is not wiki) and per kind',
    );
    t.same(
      (await s.objects.list('policy')).map((o) => o.name),
      ['a', 'b', 'wiki'],
    );
    t.same(await s.objects.list('location'), [await s.objects.get('location', 'office')]);
    t.equal(await s.objects.get('app', 'WIKI'), undefined);

    const rows = async () => (await s.audit.list(1_000)).length;
    let before = await rows();
    await t.rejects(
      s.objects.put('app', 'wiki', { host: 'evil' }, audit('app.create'), 0, 3_000),
      { code: 'ERR_CONFLICT', status: 409 },
      'creating twice',
    );
    await t.rejects(
      s.objects.put('app', 'wiki', { host: 'evil' }, audit('app.update'), 2, 3_000),
      { code: 'ERR_CONFLICT', status: 409, details: { version: 1, expectedVersion: 2 } },
      'replacing a version that is not the stored one',
    );
    await t.rejects(
      s.objects.put('app', 'nowhere', { host: 'x' }, audit('app.update'), 1, 3_000),
      { code: 'ERR_NOT_FOUND', status: 404 },
      'replacing what is not there',
    );
    t.strictSame(await s.objects.get('app', 'wiki'), wiki, 'refused changes leave the object as it was');
    t.equal(await s.objects.get('app', 'nowhere'), undefined);
    t.equal(await rows(), before, 'and write no audit row');

    const v2 = await s.objects.put('app', 'wiki', { host: 'wiki2.example' }, audit('app.update', 'bob'), 1, 4_000);
    t.strictSame(v2, {
      kind: 'app',
      name: 'wiki',
      spec: { host: 'wiki2.example' },
      version: 2,
      createdAt: 1_000,
      updatedAt: 4_000,
      updatedBy: 'bob',
    });
    t.match(await s.audit.list(1), [{ action: 'app.update', actor: 'bob', at: 4_000 }]);
    await t.rejects(
      s.objects.put('app', 'wiki', { host: 'lost update' }, audit('app.update'), 1, 4_500),
      { code: 'ERR_CONFLICT' },
      'the version read before is stale now',
    );

    const up = await s.objects.put('app', 'wiki', { host: 'wiki3.example' }, audit('app.apply'), undefined, 5_000);
    t.match(
      up,
      { version: 3, createdAt: 1_000, updatedAt: 5_000, spec: { host: 'wiki3.example' } },
      'an upsert replaces',
    );
    t.same(up.spec, { host: 'wiki3.example' }, 'the whole spec');
    const fresh = await s.objects.put(
      'location',
      'home',
      { cidr: ['10.0.0.0/8'] },
      audit('location.apply'),
      undefined,
      5_500,
    );
    t.match(fresh, { version: 1, createdAt: 5_500 }, 'and creates');

    before = await rows();
    await t.rejects(s.objects.remove('app', 'wiki', audit('app.remove'), 2, 6_000), {
      code: 'ERR_CONFLICT',
      status: 409,
    });
    await t.rejects(s.objects.remove('app', 'wiki', audit('app.remove'), 0, 6_000), { code: 'ERR_CONFLICT' });
    await t.rejects(s.objects.remove('app', 'nowhere', audit('app.remove'), undefined, 6_000), {
      code: 'ERR_NOT_FOUND',
      status: 404,
    });
    await t.rejects(s.objects.remove('app', 'nowhere', audit('app.remove'), 1, 6_000), { code: 'ERR_NOT_FOUND' });
    t.equal(await rows(), before, 'refused removals audit nothing');
    t.ok(await s.objects.get('app', 'wiki'));

    await s.objects.remove('app', 'wiki', audit('app.remove', 'carol'), 3, 7_000);
    t.equal(await s.objects.get('app', 'wiki'), undefined);
    t.match(await s.audit.list(1), [{ action: 'app.remove', actor: 'carol', at: 7_000, connectorId: null }]);
    await t.rejects(s.objects.remove('app', 'wiki', audit('app.remove'), undefined, 7_500), {
      code: 'ERR_NOT_FOUND',
    });
    await s.objects.remove('policy', 'wiki', audit('policy.remove'), undefined, 8_000);
    t.ok(await s.objects.get('app', 'Wiki'), 'others stay');
    t.match(
      await s.objects.put('app', 'wiki', { host: 'again' }, audit('app.create'), 0, 9_000),
      { version: 1, createdAt: 9_000 },
      'a removed name can be created anew',
    );
  });

  t.test('managed objects: hostile input is refused before anything is written', async (t) => {
    const s = await opened(t, newStore(t));
    const audit = { actor: 'admin', action: 'x.create', details: {} };
    await s.objects.put('app', 'kept', { a: 1 }, audit, 0, 1_000);
    const before = await s.transfer.export(2_000);
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    const cases: [string, () => Promise<unknown>, string, number][] = [
      ['an unknown kind', () => s.objects.put('user' as 'app', 'x', {}, audit, 0, 1), 'ERR_BAD_REQUEST', 400],
      ['an empty name', () => s.objects.put('app', '', {}, audit, 0, 1), 'ERR_BAD_REQUEST', 400],
      [
        'a name of 257 characters',
        () => s.objects.put('app', 'n'.repeat(257), {}, audit, 0, 1),
        'ERR_BAD_REQUEST',
        400,
      ],
      ['a name with NUL', () => s.objects.put('app', 'a\0b', {}, audit, 0, 1), 'ERR_BAD_REQUEST', 400],
      ['a name with a lone surrogate', () => s.objects.put('app', 'a\ud800', {}, audit, 0, 1), 'ERR_BAD_REQUEST', 400],
      [
        'an array spec',
        () => s.objects.put('app', 'x', [] as unknown as Record<string, unknown>, audit, 0, 1),
        'ERR_BAD_REQUEST',
        400,
      ],
      [
        'a null spec',
        () => s.objects.put('app', 'x', null as unknown as Record<string, unknown>, audit, 0, 1),
        'ERR_BAD_REQUEST',
        400,
      ],
      [
        'a string spec',
        () => s.objects.put('app', 'x', '{}' as unknown as Record<string, unknown>, audit, 0, 1),
        'ERR_BAD_REQUEST',
        400,
      ],
      ['a cyclic spec', () => s.objects.put('app', 'x', cyclic, audit, 0, 1), 'ERR_BAD_REQUEST', 400],
      ['a BigInt in the spec', () => s.objects.put('app', 'x', { n: 1n }, audit, 0, 1), 'ERR_BAD_REQUEST', 400],
      [
        'a spec whose toJSON is not an object',
        () => s.objects.put('app', 'x', { toJSON: () => [1] }, audit, 0, 1),
        'ERR_BAD_REQUEST',
        400,
      ],
      ['a negative version', () => s.objects.put('app', 'kept', {}, audit, -1, 1), 'ERR_BAD_REQUEST', 400],
      ['a fractional version', () => s.objects.put('app', 'kept', {}, audit, 1.5, 1), 'ERR_BAD_REQUEST', 400],
      ['a NaN version', () => s.objects.put('app', 'kept', {}, audit, Number.NaN, 1), 'ERR_BAD_REQUEST', 400],
      [
        'a spec of 64 KiB + 1 byte',
        () => s.objects.put('app', 'x', { x: 'a'.repeat(65_529) }, audit, 0, 1),
        'ERR_BODY_TOO_LARGE',
        413,
      ],
      // 40,000 characters, 80,000 bytes: the limit counts bytes.
      [
        'a spec of 40,000 two-byte characters',
        () => s.objects.put('app', 'x', { x: 'é'.repeat(40_000) }, audit, 0, 1),
        'ERR_BODY_TOO_LARGE',
        413,
      ],
      [
        'removing with a NUL name',
        () => s.objects.remove('app', 'kept\0', audit, undefined, 1),
        'ERR_BAD_REQUEST',
        400,
      ],
      ['removing with a bad version', () => s.objects.remove('app', 'kept', audit, -2, 1), 'ERR_BAD_REQUEST', 400],
    ];
    for (const [what, call, code, status] of cases) await t.rejects(call(), { code, status }, what);
    t.strictSame(await s.transfer.export(2_000), before, 'nothing was written, nothing audited');
    const largest = await s.objects.put('app', 'largest', { x: 'a'.repeat(65_528) }, audit, 0, 3_000);
    t.equal(Buffer.byteLength(JSON.stringify(largest.spec)), 64 * 1024, 'exactly 64 KiB is accepted');
    t.equal((await s.objects.get('app', 'largest'))?.spec['x'], 'a'.repeat(65_528));
    const longest = 'ñ'.repeat(256);
    await s.objects.put('policy', longest, {}, audit, 0, 3_000);
    t.ok(await s.objects.get('policy', longest), 'a name of 256 characters is accepted');
  });

  t.test('managed objects: specs and names round-trip exactly, hostile content stays data', async (t) => {
    const open = newStore(t);
    const s = await opened(t, open);
    const other = await opened(t, open);
    for (const [name, text] of HOSTILE) {
      const spec = JSON.parse(text) as Record<string, unknown>;
      const stored = await s.objects.put(
        'policy',
        name,
        spec,
        { actor: name, action: 'policy.create', details: { name } },
        0,
        1_000,
      );
      for (const [label, got] of [
        ['returned', stored],
        ['read', await s.objects.get('policy', name)],
        ['read elsewhere', await other.objects.get('policy', name)],
        ['listed', (await other.objects.list('policy')).find((o) => o.name === name)],
      ] as const) {
        t.equal(
          JSON.stringify(got?.spec),
          JSON.stringify(spec),
          `${JSON.stringify(name)} ${label}: the same JSON, keys in order`,
        );
        // tap's deep compare trips on an own __proto__ key; the JSON above is the exact check.
        if (name !== 'proto') t.strictSame(got?.spec, spec);
        t.equal(got?.name, name);
        t.equal(got?.updatedBy, name);
      }
    }
    const proto = (await other.objects.get('policy', 'proto'))!.spec;
    t.ok(Object.hasOwn(proto, '__proto__'), '__proto__ is an own key');
    t.equal(Object.getPrototypeOf(proto), Object.prototype, 'not the prototype');
    t.same(proto['__proto__'], { polluted: true });
    t.equal(({} as Record<string, unknown>)['polluted'], undefined, 'nothing polluted');
    t.equal((await s.objects.list('policy')).length, HOSTILE.length);
    t.match(await s.audit.list(1), [{ details: { name: HOSTILE.at(-1)![0] } }], 'the audit row holds them too');
  });

  t.test('managed objects: a change is told to this store and to other connections', async (t) => {
    const open = newStore(t);
    const a = await opened(t, open);
    const b = await opened(t, open);
    const seen: (ReadonlySet<StoreTopic> | 'all')[] = [];
    const stop = a.onChange((topics) => seen.push(topics), 10);
    t.teardown(stop);
    const audit = { actor: 'admin', action: 'app.create', details: {} };
    await a.objects.put('app', 'mine', {}, audit, 0, 1_000);
    await waitFor(() => seen.some((x) => x !== 'all' && x.has('objects')), { what: "'objects' for a change here" });
    t.pass("this store's own change: 'objects'");
    seen.length = 0;
    await b.objects.put('app', 'theirs', {}, audit, 0, 1_000);
    await waitFor(() => seen.some((x) => x === 'all' || x.has('objects')), { what: 'a change elsewhere' });
    t.pass("another connection's change: 'objects' (PostgreSQL) or 'all' (SQLite)");
    seen.length = 0;
    await b.objects.remove('app', 'mine', audit, 1, 2_000);
    await waitFor(() => seen.some((x) => x === 'all' || x.has('objects')), { what: 'a removal elsewhere' });
    t.pass('a removal too');
  });

  t.test('keys: add retires the current one, drop removes old retired ones', async (t) => {
    const s = await opened(t, newStore(t));
    t.same(await s.keys.list('session'), []);
    await s.keys.add({ kid: 'k1', purpose: 'session', material: 'm1' }, 'test', 1_000);
    await s.keys.add({ kid: 'k2', purpose: 'session', material: 'm2' }, 'test', 2_000);
    await s.keys.add({ kid: 'a1', purpose: 'assertion', material: 'ma' }, 'test', 2_500);
    t.same(
      await s.keys.list('session'),
      [
        { kid: 'k2', purpose: 'session', material: 'm2', createdAt: 2_000, retiredAt: null },
        { kid: 'k1', purpose: 'session', material: 'm1', createdAt: 1_000, retiredAt: 2_000 },
      ],
      'newest first; the previous one retired, still listed',
    );
    t.same(
      (await s.keys.list('assertion')).map((k) => [k.kid, k.retiredAt]),
      [['a1', null]],
      'purposes are separate',
    );
    t.match((await s.audit.list(1))[0], {
      action: 'key.rotate',
      actor: 'test',
      connectorId: null,
      details: { purpose: 'assertion', kid: 'a1' },
    });
    t.equal(await s.keys.dropRetiredBefore('session', 2_000), 0, 'retired at 2000 is not before 2000');
    t.equal(await s.keys.dropRetiredBefore('assertion', 10_000), 0, 'the current key is never dropped');
    t.equal(await s.keys.dropRetiredBefore('session', 2_001), 1);
    t.same(
      (await s.keys.list('session')).map((k) => k.kid),
      ['k2'],
    );
  });

  t.test('sign-in states are single use', async (t) => {
    const s = await opened(t, newStore(t));
    const state = {
      state: 'st-1',
      app: 'wiki',
      nonce: 'n',
      verifier: 'v',
      returnTo: '/x?y=1',
      createdAt: 1_000,
      stepUp: true,
    };
    await s.sessions.putSigninState(state);
    await s.sessions.putSigninState({ ...state, state: 'st-2', stepUp: false, createdAt: 5_000 });
    t.same(await s.sessions.takeSigninState('st-1'), state);
    t.equal(await s.sessions.takeSigninState('st-1'), undefined, 'a replay finds nothing');
    await s.sessions.putSigninState({ ...state, state: 'st-3', createdAt: 1_000 });
    await s.sessions.purgeSigninStates(2_000);
    t.equal(await s.sessions.takeSigninState('st-3'), undefined, 'purged');
    t.same(
      await s.sessions.takeSigninState('st-2'),
      { ...state, state: 'st-2', stepUp: false, createdAt: 5_000 },
      'a newer one survives the purge',
    );
  });

  t.test('sessions and ended provider sessions, across connections, with purge', async (t) => {
    const open = newStore(t);
    const a = await opened(t, open);
    const b = await opened(t, open);
    await a.sessions.create({
      sid: 's-1',
      app: 'wiki',
      subject: 'alice',
      createdAt: 0,
      expiresAt: 1_000,
      clientIp: '192.0.2.1',
    });
    await a.sessions.create({
      sid: 's-old',
      app: 'wiki',
      subject: 'alice',
      createdAt: 0,
      expiresAt: 10,
      clientIp: null,
    });
    t.ok(await b.sessions.isActive('s-1', 500), 'another connection sees it');
    t.notOk(await b.sessions.isActive('s-1', 1_000), 'not at its expiry');
    t.notOk(await b.sessions.isActive('s-none', 500));
    await b.sessions.revoke('s-1', 600);
    t.notOk(await a.sessions.isActive('s-1', 700), 'a sign-out is seen everywhere');

    t.notOk(await b.sessions.providerSessionEnded('p-1', 1_000));
    await a.sessions.endProviderSession('p-1', 1_000, 1_000 + HOUR);
    t.ok(await b.sessions.providerSessionEnded('p-1', 1_001));
    t.notOk(await b.sessions.providerSessionEnded('P-1', 1_001), 'sids compare exactly');
    t.notOk(await b.sessions.providerSessionEnded('p-1', 1_000 + HOUR), 'over at its end');
    await a.sessions.endProviderSession('p-1', 2_000, 2_000 + HOUR);
    t.ok(await b.sessions.providerSessionEnded('p-1', 1_000 + HOUR), 'a second sign-out extends it');
    await a.sessions.endProviderSession('p-1', 3_000, 3_001);
    t.ok(await b.sessions.providerSessionEnded('p-1', 1_000 + HOUR), 'and never shortens it');
    await a.sessions.endProviderSession('p-old', 0, 10);

    await a.sessions.create({
      sid: 's-2',
      app: 'wiki',
      subject: 'bob',
      createdAt: 0,
      expiresAt: 5_000,
      clientIp: null,
    });
    await a.sessions.purge(500);
    t.ok(await a.sessions.isActive('s-2', 600), 'an unexpired session survives the purge');
    t.ok(await a.sessions.providerSessionEnded('p-1', 600), 'so does an unexpired ended provider session');
    await a.close();
    const c = await opened(t, open);
    t.ok(await c.sessions.providerSessionEnded('p-1', 1_000 + HOUR), 'kept across a restart');
    t.ok(await c.sessions.isActive('s-2', 600));
  });

  t.test('users: add, update, list, remove, audited', async (t) => {
    const s = await opened(t, newStore(t));
    await s.users.put(
      user('bob', { groups: ['staff', 'ops'], roles: ['ProxyAdministrator'], email: 'bob@example.com', name: 'Bob' }),
      'admin',
      'user.add',
    );
    await s.users.put(user('alice', { totpSecret: 'SECRET' }), 'admin', 'user.add');
    t.same(
      await s.users.get('bob'),
      user('bob', { groups: ['staff', 'ops'], roles: ['ProxyAdministrator'], email: 'bob@example.com', name: 'Bob' }),
    );
    t.equal(await s.users.get('BOB'), undefined, 'lookups are exact; callers lower-case');
    t.same(
      (await s.users.list()).map((u) => u.username),
      ['alice', 'bob'],
      'by name',
    );
    await s.users.put({ ...user('bob'), passwordHash: 'new-hash', createdAt: 9_999 }, 'admin', 'user.update');
    t.match(
      await s.users.get('bob'),
      { passwordHash: 'new-hash', groups: [], email: null, createdAt: 1_000 },
      'an update keeps the creation time',
    );
    t.equal(await s.users.remove('alice', 'admin'), true);
    t.equal(await s.users.remove('alice', 'admin'), false, 'already gone');
    t.equal(await s.users.get('alice'), undefined);
    t.same(
      (await s.audit.list()).map((a) => [a.action, a.actor, a.details['username']]),
      [
        ['user.remove', 'admin', 'alice'],
        ['user.update', 'admin', 'bob'],
        ['user.add', 'admin', 'alice'],
        ['user.add', 'admin', 'bob'],
      ],
      'a removal of nobody is not audited',
    );
  });

  t.test('users: a TOTP step is accepted once, per user, across connections', async (t) => {
    const open = newStore(t);
    const a = await opened(t, open);
    const b = await opened(t, open);
    t.equal(await a.users.acceptTotpStep('bob', 1_000), true);
    t.equal(await b.users.acceptTotpStep('bob', 1_000), false, 'the same step elsewhere');
    t.equal(await a.users.acceptTotpStep('bob', 999), false, 'an earlier step');
    t.equal(await b.users.acceptTotpStep('bob', 1_001), true, 'the next step');
    t.equal(await a.users.acceptTotpStep('alice', 1_000), true, 'users are separate');
  });

  t.test('sign-in log: recorded in order, paged by id', async (t) => {
    const s = await opened(t, newStore(t));
    const entry = (n: number) =>
      signInRecord({
        at: n,
        requestId: `r-${n}`,
        app: 'wiki',
        subject: n % 2 ? 'alice' : null,
        ip: '192.0.2.1',
        country: 'NL',
        userAgent: 'ua',
        result: n % 2 ? ('success' as const) : ('failure' as const),
        reason: n % 2 ? null : 'denied',
        policies: [{ name: 'p', result: 'allow' }],
      });
    for (let n = 1; n <= 5; n++) await s.signIns.record(entry(n));
    await s.signIns.record({ ...entry(6), userAgent: 'x'.repeat(2_000) });
    const all = await s.signIns.list();
    t.same(
      all.map((e) => e.at),
      [1, 2, 3, 4, 5, 6],
      'oldest first',
    );
    t.match(all[1], { ...entry(2), id: Number });
    t.equal(all[5]?.userAgent?.length, 512, 'the user agent is cut to 512 characters');
    const first = await s.signIns.list(2);
    t.same(
      first.map((e) => e.at),
      [1, 2],
    );
    t.same(
      (await s.signIns.list(2, first[1]!.id)).map((e) => e.at),
      [3, 4],
      'the next page starts after the last id',
    );
    t.same(await s.signIns.list(10, all[5]!.id), [], 'nothing after the last');
  });

  t.test('sign-in log: filters, paging both ways, one by id, a user history, prune', async (t) => {
    const s = await opened(t, newStore(t));
    const rows: [number, string | null, string, 'success' | 'failure' | 'stepUp', 'none' | 'low' | 'high'][] = [
      [100, 'alice', 'wiki', 'success', 'none'],
      [200, 'bob', 'wiki', 'failure', 'high'],
      [300, 'alice', 'mail', 'stepUp', 'low'],
      [400, 'alice', 'wiki', 'success', 'low'],
      [500, null, 'mail', 'failure', 'none'],
      [600, 'alice', 'mail', 'success', 'none'],
    ];
    const ids: number[] = [];
    for (const [at, subject, app, result, risk] of rows)
      ids.push(
        await s.signIns.record(signInRecord({ at, subject, app, result, risk, kind: 'bearer', methods: ['pwd'] })),
      );
    t.same(
      ids,
      [...ids].sort((a, b) => a - b),
      'ids grow',
    );
    const ats = async (q: Parameters<Store['signIns']['query']>[0]) => (await s.signIns.query(q)).map((e) => e.at);
    t.same(await ats({ subject: 'alice' }), [100, 300, 400, 600]);
    t.same(await ats({ subject: 'alice', app: 'wiki' }), [100, 400]);
    t.same(await ats({ result: 'failure' }), [200, 500]);
    t.same(await ats({ risk: 'low' }), [300, 400]);
    t.same(await ats({ since: 200, until: 400 }), [200, 300, 400], 'since and until are inclusive');
    t.same(await ats({ order: 'desc', limit: 2 }), [600, 500], 'newest first');
    t.same(await ats({ order: 'desc', beforeId: ids[4]!, limit: 2 }), [400, 300], 'the next page back');
    t.same(await ats({ afterId: ids[3]! }), [500, 600]);
    t.same(await ats({ subject: "alice' OR '1'='1" }), [], 'a filter value is a value, never SQL');
    t.same(await ats({ limit: 0 }), [100], 'at least one row per page');
    const one = await s.signIns.get(ids[1]!);
    t.match(one, { id: ids[1], at: 200, subject: 'bob', kind: 'bearer', methods: ['pwd'], risk: 'high' });
    t.equal(await s.signIns.get(999_999), undefined);
    t.same(
      (await s.signIns.history('alice', 150, 10)).map((e) => e.at),
      [600, 400],
      "a user's successes since a time, newest first",
    );
    t.same(
      (await s.signIns.history('alice', 0, 1)).map((e) => e.at),
      [600],
      'bounded',
    );
    t.equal(await s.signIns.prune(300), 2, 'rows older than the cut are deleted');
    t.same(await ats({}), [300, 400, 500, 600]);
  });

  t.test('sign-in log: every field round-trips; detections become risk rows', async (t) => {
    const s = await opened(t, newStore(t));
    const full = signInRecord({
      at: 1_000,
      requestId: 'req-1',
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      kind: 'interactive',
      app: 'wiki',
      subject: 'carol',
      ip: '2001:db8::7',
      country: 'FR',
      city: 'Paris',
      latitude: 48.85,
      longitude: 2.35,
      asn: 3215,
      network: 'Orange',
      userAgent: 'Mozilla/5.0 "quoted" \u00e9',
      browser: 'Firefox 128',
      os: 'Linux',
      clientType: 'browser',
      methods: ['pwd', 'otp'],
      result: 'success',
      reason: null,
      policies: [{ name: 'mfa', outcome: 'granted' }],
      risk: 'medium',
      detections: [
        { type: 'unfamiliarProperties', level: 'low', detail: 'new country FR' },
        { type: 'atypicalTravel', level: 'medium', detail: '950 km in 20 min' },
      ],
    });
    const id = await s.signIns.record(full);
    t.same(await s.signIns.get(id), { ...full, id });
    const found = await s.risk.detections({ subject: 'carol' });
    t.match(found, [
      {
        type: 'unfamiliarProperties',
        level: 'low',
        signInId: id,
        ip: '2001:db8::7',
        app: 'wiki',
        requestId: 'req-1',
        at: 1_000,
      },
      { type: 'atypicalTravel', level: 'medium', signInId: id, details: { detail: '950 km in 20 min' } },
    ]);
    const alone = await s.risk.addDetection({
      at: 2_000,
      subject: null,
      ip: '203.0.113.5',
      app: null,
      type: 'passwordSpray',
      level: 'high',
      signInId: null,
      requestId: null,
      details: { accounts: 25 },
    });
    t.match(await s.risk.detections({ type: 'passwordSpray' }), [
      { id: alone, subject: null, details: { accounts: 25 } },
    ]);
    t.same(
      (await s.risk.detections({ since: 1_500 })).map((d) => d.type),
      ['passwordSpray'],
    );
    t.same(
      (await s.risk.detections({ order: 'desc', limit: 1 })).map((d) => d.id),
      [alone],
    );
    t.equal(await s.risk.remediate('carol', 1_000, '2001:db8::8', 'mfa'), 0, 'only from the same address');
    t.equal(await s.risk.remediate('carol', 1_001, '2001:db8::7', 'mfa'), 0, 'only since the given time');
    t.equal(await s.risk.remediate('carol', 1_000, '2001:db8::7', 'mfa'), 2, "the user's detections on sign-ins");
    t.match(await s.risk.detections({ subject: 'carol' }), [
      { details: { remediated: 'mfa' } },
      { details: { detail: '950 km in 20 min', remediated: 'mfa' } },
    ]);
    t.same((await s.risk.detections({ type: 'passwordSpray' }))[0]!.details, { accounts: 25 }, 'others untouched');
    t.equal(await s.risk.prune(1_500), 2);
    t.same(
      (await s.risk.detections({})).map((d) => d.id),
      [alone],
    );
  });

  t.test('risk: dismiss and confirm a user, audited, reported to other connections', async (t) => {
    const open = newStore(t);
    const a = await opened(t, open);
    const b = await opened(t, open);
    const seen: (ReadonlySet<StoreTopic> | 'all')[] = [];
    const stop = a.onChange((topics) => seen.push(topics), 10);
    t.teardown(stop);
    t.equal(await a.risk.userState('dave'), undefined);
    await b.risk.confirm('dave', 'admin@example.com', 1_000);
    t.same(await a.risk.userState('dave'), {
      subject: 'dave',
      dismissedAt: null,
      confirmedAt: 1_000,
      by: 'admin@example.com',
    });
    await b.risk.dismiss('dave', 'other-admin', 2_000);
    t.same(
      await a.risk.userState('dave'),
      { subject: 'dave', dismissedAt: 2_000, confirmedAt: null, by: 'other-admin' },
      'dismissing clears a confirmation',
    );
    await b.risk.confirm('dave', 'admin@example.com', 3_000);
    t.match(
      await a.risk.userState('dave'),
      { dismissedAt: 2_000, confirmedAt: 3_000 },
      'confirming keeps the last dismissal',
    );
    await b.risk.dismiss('erin', 'admin@example.com', 4_000);
    t.same(
      (await a.risk.states()).map((x) => x.subject),
      ['dave', 'erin'],
    );
    t.match(await a.audit.query({ action: 'risk.', order: 'asc' }), [
      { action: 'risk.confirm', actor: 'admin@example.com', details: { subject: 'dave' } },
      { action: 'risk.dismiss', actor: 'other-admin' },
      { action: 'risk.confirm' },
      { action: 'risk.dismiss', details: { subject: 'erin' } },
    ]);
    const reported = () => seen.some((x) => x === 'all' || x.has('risk'));
    await waitFor(reported, { timeoutMs: 3000, what: 'the risk change to be reported' }).catch(() => undefined);
    t.ok(reported(), 'other connections hear of it');
  });

  t.test('audit: filters, an action prefix taken literally, record, prune', async (t) => {
    const s = await opened(t, newStore(t));
    const at = [10, 20, 30, 40];
    const actions = ['config.reload', 'connector.revoke', 'config_x', 'configXreload'];
    const ids: number[] = [];
    for (let i = 0; i < 4; i++)
      ids.push(
        await s.audit.record({
          at: at[i]!,
          actor: i % 2 ? 'bob' : 'alice',
          action: actions[i]!,
          connectorId: null,
          details: { i },
        }),
      );
    const acts = async (q: Parameters<Store['audit']['query']>[0]) => (await s.audit.query(q)).map((e) => e.action);
    t.same(await acts({ action: 'config.' }), ['config.reload'], "a prefix's dot and an underscore are not wildcards");
    t.same(await acts({ action: 'config_x' }), ['config_x']);
    t.same(await acts({ action: '%' }), []);
    t.same(await acts({ action: 'config%.' }), [], 'a % in a prefix is literal');
    t.same(await acts({ actor: 'bob' }), ['connector.revoke', 'configXreload']);
    t.same(await acts({ since: 20, until: 30 }), ['connector.revoke', 'config_x']);
    t.same(await acts({ order: 'desc', beforeId: ids[3]!, limit: 1 }), ['config_x']);
    t.match(await s.audit.list(1), [{ id: ids[3], details: { i: 3 } }], 'list: newest first');
    t.equal(await s.audit.prune(25), 2);
    t.same(await acts({}), ['config_x', 'configXreload']);
  });

  t.test('event feed: three logs merged by time, stable ids, a cursor that never skips', async (t) => {
    const s = await opened(t, newStore(t));
    const t0 = 1_000_000;
    t.same(await s.events.head(), { signIn: 0, audit: 0, riskDetection: 0 });
    const si1 = await s.signIns.record(signInRecord({ at: t0 + 10, subject: 'a' }));
    const au1 = await s.audit.record({
      at: t0 + 20,
      actor: 'x',
      action: 'config.reload',
      connectorId: null,
      details: {},
    });
    const si2 = await s.signIns.record(
      signInRecord({ at: t0 + 30, subject: 'b', risk: 'high', detections: [{ type: 'maliciousIp', level: 'high' }] }),
    );
    const [det] = await s.risk.detections({});
    const zero = { signIn: 0, audit: 0, riskDetection: 0 };
    const all = await s.events.read(zero, 100, t0 + 60_000);
    t.same(
      all.events.map((e) => e.id),
      [`signin-${si1}`, `audit-${au1}`, `signin-${si2}`, `risk-${det!.id}`],
      'merged by time; a detection at the same time as its sign-in after it',
    );
    t.match(all.events[2], { kind: 'signIn', at: t0 + 30, data: { subject: 'b', risk: 'high' } });
    t.same(all.cursor, { signIn: si2, audit: au1, riskDetection: det!.id });
    t.same(await s.events.head(), all.cursor, 'head is where a full read ends');
    const page1 = await s.events.read(zero, 2, t0 + 60_000);
    t.same(
      page1.events.map((e) => e.id),
      [`signin-${si1}`, `audit-${au1}`],
    );
    const page2 = await s.events.read(page1.cursor, 2, t0 + 60_000);
    t.same(
      page2.events.map((e) => e.id),
      [`signin-${si2}`, `risk-${det!.id}`],
      'the next page continues',
    );
    t.same((await s.events.read(page2.cursor, 10, t0 + 60_000)).events, [], 'nothing past the end');

    // A gap in the ids: the row that would fill it might still commit (PostgreSQL, concurrent writers).
    const old = await s.signIns.record(signInRecord({ at: t0 - 10_000, subject: 'gone' }));
    const young = await s.signIns.record(signInRecord({ at: t0 + 100_000, subject: 'c' }));
    t.equal(await s.signIns.prune(t0), 1, 'one row pruned, leaving a gap');
    const held = await s.events.read(page2.cursor, 10, t0 + 100_000 + 1_000);
    t.same(held.events, [], 'a row past a young gap is held back');
    t.same(held.cursor, page2.cursor, 'and the cursor does not move');
    const later = await s.events.read(page2.cursor, 10, t0 + 100_000 + 10_000);
    t.same(
      later.events.map((e) => e.id),
      [`signin-${young}`],
      'an old gap is taken for a row that will never come',
    );
    t.ok(old < young);
  });

  t.test('export cursors: one lease holder per sink, saves only by the holder, release', async (t) => {
    const open = newStore(t);
    const a = await opened(t, open);
    const b = await opened(t, open);
    const c1 = { signIn: 5, audit: 2, riskDetection: 0 };
    t.equal(await a.exportCursors.load('syslog:tls://siem:6514'), undefined);
    t.ok(await a.exportCursors.claim('syslog:tls://siem:6514', 'replica-a', 10_000, 1_000), 'a free sink is taken');
    t.notOk(
      await b.exportCursors.claim('syslog:tls://siem:6514', 'replica-b', 11_000, 2_000),
      'a held lease is refused',
    );
    t.equal(await a.exportCursors.load('syslog:tls://siem:6514'), undefined, 'no cursor until one is saved');
    t.ok(await a.exportCursors.save('syslog:tls://siem:6514', c1, 'replica-a'));
    t.notOk(await b.exportCursors.save('syslog:tls://siem:6514', { ...c1, signIn: 99 }, 'replica-b'), 'not the holder');
    t.same(await b.exportCursors.load('syslog:tls://siem:6514'), c1);
    t.ok(await a.exportCursors.claim('syslog:tls://siem:6514', 'replica-a', 20_000, 9_000), 'the holder renews');
    t.notOk(await b.exportCursors.claim('syslog:tls://siem:6514', 'replica-b', 21_000, 15_000));
    t.ok(
      await b.exportCursors.claim('syslog:tls://siem:6514', 'replica-b', 31_000, 20_001),
      'an expired lease is taken over',
    );
    t.notOk(await a.exportCursors.save('syslog:tls://siem:6514', c1, 'replica-a'), 'the old holder can no longer save');
    t.same(await a.exportCursors.load('syslog:tls://siem:6514'), c1, 'the cursor survives the takeover');
    await b.exportCursors.release('syslog:tls://siem:6514', 'replica-b');
    t.ok(
      await a.exportCursors.claim('syslog:tls://siem:6514', 'replica-a', 40_000, 21_000),
      'a released lease is free at once',
    );
    t.ok(await a.exportCursors.claim('webhook:https://hook/', 'replica-a', 40_000, 21_000), 'sinks are independent');
  });

  t.test('identity-provider artifacts: find, consume, expiry, grants', async (t) => {
    const s = await opened(t, newStore(t));
    await s.idpArtifacts.upsert('Session', 's1', { uid: 'u1', accountId: 'alice' }, undefined);
    await s.idpArtifacts.upsert('DeviceCode', 'd1', { userCode: 'ABCD-EFGH', grantId: 'g1' }, 600);
    await s.idpArtifacts.upsert('AccessToken', 't1', { grantId: 'g1' }, 600);
    await s.idpArtifacts.upsert('AccessToken', 't2', { grantId: 'g2' }, 600);
    await s.idpArtifacts.upsert('AuthorizationCode', 'old', { grantId: 'g3' }, -1); // expired when stored
    t.same(await s.idpArtifacts.find('Session', 'id', 's1'), { uid: 'u1', accountId: 'alice' });
    t.same(await s.idpArtifacts.find('Session', 'uid', 'u1'), { uid: 'u1', accountId: 'alice' });
    t.same(await s.idpArtifacts.find('DeviceCode', 'userCode', 'ABCD-EFGH'), { userCode: 'ABCD-EFGH', grantId: 'g1' });
    t.equal(await s.idpArtifacts.find('Grant', 'id', 's1'), undefined, 'models are separate');
    t.equal(await s.idpArtifacts.find('AuthorizationCode', 'id', 'old'), undefined, 'an expired artifact is not found');

    await s.idpArtifacts.upsert('Session', 's1', { uid: 'u2', accountId: 'alice' }, undefined);
    t.equal(await s.idpArtifacts.find('Session', 'uid', 'u1'), undefined, 'an upsert replaces the lookup fields');
    t.same(await s.idpArtifacts.find('Session', 'uid', 'u2'), { uid: 'u2', accountId: 'alice' });

    const before = Math.floor(Date.now() / 1000);
    await s.idpArtifacts.consume('AccessToken', 't2');
    const consumed = (await s.idpArtifacts.find('AccessToken', 'id', 't2'))?.['consumed'];
    t.ok(typeof consumed === 'number' && consumed >= before, 'consume marks it, in seconds');
    await s.idpArtifacts.consume('AccessToken', 'nothing'); // no throw

    await s.idpArtifacts.revokeByGrantId('g1');
    t.equal(await s.idpArtifacts.find('AccessToken', 'id', 't1'), undefined, 'a revoked grant takes its tokens');
    t.equal(await s.idpArtifacts.find('DeviceCode', 'id', 'd1'), undefined);
    t.ok(await s.idpArtifacts.find('AccessToken', 'id', 't2'), 'other grants stay');
    await s.idpArtifacts.destroy('AccessToken', 't2');
    t.equal(await s.idpArtifacts.find('AccessToken', 'id', 't2'), undefined);
    await s.idpArtifacts.purgeExpired();
    t.ok(await s.idpArtifacts.find('Session', 'id', 's1'), 'purging keeps what has not expired');
  });

  t.test('change detection: generation and change feed', async (t) => {
    const open = newStore(t);
    const a = await opened(t, open);
    const b = await opened(t, open);
    const gen = a.generation;
    a.bumpGeneration();
    t.equal(a.generation, gen + 1);
    const seen: (ReadonlySet<StoreTopic> | 'all')[] = [];
    const stop = a.onChange((topics) => seen.push(topics), 10);
    await b.connectors.register(connector('c-a', 'edge', 'AA01'));
    const reported = () => seen.some((x) => x === 'all' || x.has('connectors'));
    await waitFor(reported, { timeoutMs: 3000, what: 'the change to be reported' }).catch(() => undefined);
    t.ok(reported(), 'a commit by another connection is reported');
    stop();
    t.ok(a.reachable());
    await a.close();
    await a.close(); // idempotent
  });

  t.test('replicas: heartbeat, live set, leaving', async (t) => {
    const s = await opened(t, newStore(t));
    await s.replicas.heartbeat({ id: 'r1', connectorApiUrl: 'https://r1:8444/', version: '1' }, 10_000);
    await s.replicas.heartbeat({ id: 'r2', connectorApiUrl: 'https://r2:8444/', version: '1' }, 11_000);
    t.match(await s.replicas.live(12_000, 5_000), [
      { id: 'r1', connectorApiUrl: 'https://r1:8444/', startedAt: 10_000, heartbeatAt: 10_000 },
      { id: 'r2', startedAt: 11_000 },
    ]);
    await s.replicas.heartbeat({ id: 'r1', connectorApiUrl: 'https://r1:9444/', version: '2' }, 14_000);
    t.match(
      await s.replicas.live(16_500, 5_000),
      [{ id: 'r1', connectorApiUrl: 'https://r1:9444/', version: '2', startedAt: 10_000, heartbeatAt: 14_000 }],
      'a replica that stopped heartbeating has left; a heartbeat keeps startedAt and updates the URL',
    );
    await s.replicas.remove('r1');
    t.same(await s.replicas.live(16_500, 5_000), [], 'a replica stopping leaves at once');
  });

  t.test('secrets: first writer wins, put replaces and is audited', async (t) => {
    const open = newStore(t);
    const s = await opened(t, open);
    const other = await opened(t, open);
    t.equal(await s.secrets.get('ca'), undefined);
    const [x, y] = await Promise.all([s.secrets.putIfAbsent('ca', 'one'), other.secrets.putIfAbsent('ca', 'two')]);
    t.equal(x, y, 'two replicas starting together agree on one value');
    t.equal(await s.secrets.get('ca'), x);
    await s.secrets.put('ca', 'three', 'test');
    t.equal(await other.secrets.get('ca'), 'three');
    t.same(await s.secrets.list(), [{ name: 'ca', value: 'three' }]);
    t.match(await s.audit.list(1), [{ actor: 'test', action: 'secret.put', details: { name: 'ca' } }]);
    t.notMatch(JSON.stringify(await s.audit.list()), /three/, 'the audit row never holds the value');
    t.equal(await other.secrets.remove('ca'), true, 'remove says it deleted');
    t.equal(await s.secrets.get('ca'), undefined, 'gone for every replica');
    t.equal(await s.secrets.remove('ca'), false, 'removing it again deletes nothing');
  });

  t.test('keys: every key can be re-wrapped in place', async (t) => {
    const s = await opened(t, newStore(t));
    await s.keys.add({ kid: 'k1', purpose: 'session', material: 'm1' }, 'test', 1_000);
    await s.keys.add({ kid: 'k2', purpose: 'assertion', material: 'm2' }, 'test', 2_000);
    t.same((await s.keys.all()).map((k) => k.kid).sort(), ['k1', 'k2']);
    await s.keys.setMaterial('k1', 'wrapped-m1');
    t.match(await s.keys.list('session'), [{ kid: 'k1', material: 'wrapped-m1', createdAt: 1_000, retiredAt: null }]);
  });
  t.test('transfer: everything durable out, into a fresh store, and back out the same', async (t) => {
    const a = await opened(t, newStore(t));
    const now = Date.now();
    await fill(a, now);
    const dump = await a.transfer.export(now);
    t.match(countOf(dump), {
      connectors: 3,
      certificates: 4,
      keys: 3,
      users: 2,
      totpSteps: 1,
      secrets: 2,
      signIns: 3,
      riskDetections: 2,
      userRiskStates: 1,
      endedProviderSessions: 2,
      sessions: 2,
      idpArtifacts: 2,
      objects: 3,
    });
    t.ok(dump.audit.length >= 12, 'the audit trail');
    t.same(
      dump.sessions.map((x) => [x.sid, x.revokedAt]),
      [
        ['s-live', null],
        ['s-out', now - 500],
      ],
      'unexpired sessions, a signed-out one still signed out; the expired one stays behind',
    );
    t.same(
      dump.idpArtifacts.map((x) => `${x.model}/${x.id}`),
      ['AccessToken/t1', 'Session/s1'],
      'unexpired provider artifacts',
    );
    t.match(dump.connectors, [
      { id: 'c-a', lastSeen: now - 100, version: '1.2.3', revokedAt: null, deletedAt: null },
      { id: 'c-b', revokedAt: now - 1_000, deletedAt: null },
      { id: 'c-c', revokedAt: now - 900, deletedAt: now - 800 },
    ]);
    t.match(dump.certificates, [
      { serial: 'AA01', kind: 'register', revokedAt: now + HOUR },
      { serial: 'BB01', kind: 'register', revokedAt: now - 1_000 },
      { serial: 'CC01', kind: 'register', revokedAt: now - 900 },
      { serial: 'AA02', kind: 'renew', revokedAt: null },
    ]);
    t.same(
      dump.objects.map((o) => [o.kind, o.name, o.version, o.createdAt, o.updatedAt, o.updatedBy]),
      [
        ['app', 'wiki', 2, now - 50, now - 40, 'bob'],
        ['location', 'office', 1, now - 30, now - 30, 'admin'],
        ['policy', 'proto', 1, now - 20, now - 20, 'admin'],
      ],
      'managed objects, by kind and name',
    );

    const open = newStore(t);
    const b = await opened(t, open);
    const watcher = await opened(t, open);
    const seen: (ReadonlySet<StoreTopic> | 'all')[] = [];
    const stop = watcher.onChange((topics) => seen.push(topics), 10);
    t.teardown(stop);
    await b.transfer.import(dump, 'migration', now + 1);
    const copy = await b.transfer.export(now);
    const added = copy.audit.pop();
    // Objects compare as JSON: exact to the key order (tap's deep compare trips on an own __proto__ key).
    t.strictSame({ ...copy, objects: [] }, { ...dump, objects: [] }, 'the copy exports what the original did');
    t.equal(JSON.stringify(copy.objects), JSON.stringify(dump.objects), 'managed objects too, keys in order');
    t.same(
      added,
      { at: now + 1, actor: 'migration', action: 'store.import', connectorId: null, details: countOf(dump) },
      'plus one audit row counting what was imported',
    );

    // Through the ordinary methods, the copy behaves as the original.
    t.ok(await b.sessions.isActive('s-live', now), 'a signed-in user stays signed in');
    t.notOk(await b.sessions.isActive('s-out', now), 'a signed-out one stays signed out');
    t.ok(await b.sessions.providerSessionEnded('p-1', now));
    t.equal(await b.users.acceptTotpStep('bob', 5_000), false, 'a used TOTP step stays used');
    t.equal(await b.users.acceptTotpStep('bob', 5_001), true);
    t.match(await b.connectors.find('edge'), { id: 'c-a', lastSeen: now - 100 });
    t.same([...(await b.connectors.revokedAmong(['AA01', 'AA02', 'BB01']))], ['BB01']);
    t.same(
      (await b.keys.list('session')).map((k) => [k.kid, k.material, k.retiredAt === null]),
      [
        ['k2', 'pxk1.sealed-looking-m2', true],
        ['k1', 'm1', false],
      ],
    );
    t.equal(await b.secrets.get('relay-ca'), 'ca-value');
    t.same(await b.idpArtifacts.find('Session', 'uid', 'u1'), { uid: 'u1', accountId: 'alice' });
    t.match(await b.idpArtifacts.find('AccessToken', 'id', 't1'), { grantId: 'g1', consumed: Number });
    await b.idpArtifacts.revokeByGrantId('g1');
    t.equal(await b.idpArtifacts.find('AccessToken', 'id', 't1'), undefined, 'lookups by grant work on the copy');
    const ids = (await b.signIns.list()).map((e) => e.id);
    t.same(
      [...ids].sort((x, y) => x - y),
      ids,
      'sign-ins keep their order',
    );
    t.match(await b.audit.list(1), [{ action: 'store.import', actor: 'migration' }]);
    t.same(
      (await b.connectors.list()).map((c) => c.id),
      ['c-a', 'c-b'],
      'a deleted connector stays deleted',
    );
    t.match(await b.connectors.get('c-c'), { name: 'gone', revokedAt: now - 900 });
    await t.rejects(b.connectors.find('gone'), { code: 'ERR_CONNECTOR_NOT_FOUND' });
    t.same([...(await b.connectors.revokedAmong(['CC01']))], ['CC01'], 'its certificate stays revoked');
    t.same(
      (await b.objects.list()).map((o) => `${o.kind}/${o.name}@${o.version}`),
      ['app/wiki@2', 'location/office@1', 'policy/proto@1'],
    );
    t.ok(Object.hasOwn((await b.objects.get('policy', 'proto'))!.spec, '__proto__'));
    t.match(
      await b.objects.put('app', 'wiki', { host: 'w3' }, { actor: 'x', action: 'app.update', details: {} }, 2, now + 2),
      { version: 3, createdAt: now - 50 },
      'versions go on from where they were',
    );

    const deadline = Date.now() + 3_000;
    while (!seen.some((x) => x === 'all' || x.has('connectors')) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    t.ok(
      seen.some((x) => x === 'all' || (x.has('connectors') && x.has('keys') && x.has('users'))),
      'other connections are told',
    );
  });

  t.test('transfer: an import into a store that holds anything of its own is refused, writing nothing', async (t) => {
    const source = await opened(t, newStore(t));
    const now = Date.now();
    await fill(source, now);
    const dump = await source.transfer.export(now);
    const held: [string, (s: Store) => Promise<unknown>][] = [
      ['a connector', (s) => s.connectors.register(connector('c-x', 'mine', 'FF01'))],
      ['a key', (s) => s.keys.add({ kid: 'kx', purpose: 'session', material: 'mx' }, 'test')],
      ['a user', (s) => s.users.put(user('carol'), 'test', 'user.add')],
      ['a secret', (s) => s.secrets.putIfAbsent('relay-ca', 'mine')],
      [
        'a managed object',
        (s) => s.objects.put('app', 'mine', {}, { actor: 'test', action: 'app.create', details: {} }, 0, now),
      ],
    ];
    for (const [what, put] of held) {
      const s = await opened(t, newStore(t));
      await put(s);
      const before = await s.transfer.export(now);
      await t.rejects(s.transfer.import(dump, 'migration', now), { code: 'ERR_STORE' }, `holding ${what}`);
      t.same(await s.transfer.export(now), before, `holding ${what}: nothing written`);
    }
    // An import is not repeated over itself either.
    const b = await opened(t, newStore(t));
    await b.transfer.import(dump, 'migration', now);
    const once = await b.transfer.export(now);
    await t.rejects(b.transfer.import(dump, 'migration', now), { code: 'ERR_STORE' });
    t.same(await b.transfer.export(now), once, 'a second import writes nothing');

    const empty = await opened(t, newStore(t));
    t.same(
      countOf(await empty.transfer.export()),
      {
        connectors: 0,
        certificates: 0,
        audit: 0,
        keys: 0,
        users: 0,
        totpSteps: 0,
        secrets: 0,
        signIns: 0,
        riskDetections: 0,
        userRiskStates: 0,
        endedProviderSessions: 0,
        sessions: 0,
        idpArtifacts: 0,
        objects: 0,
      },
      'a new store exports nothing',
    );
  });
}

const countOf = (dump: StoreDump): Record<string, number> =>
  Object.fromEntries(Object.entries(dump).map(([k, v]) => [k, (v as unknown[]).length]));

/** One of everything a store keeps, written through the ordinary methods. */
async function fill(s: Store, now: number): Promise<void> {
  await s.connectors.register(connector('c-a', 'edge', 'AA01', now - 2 * HOUR));
  await s.connectors.register(connector('c-b', 'old', 'BB01', now - HOUR));
  await s.connectors.recordRenewal({
    connectorId: 'c-a',
    oldSerial: 'AA01',
    serial: 'AA02',
    issuedAt: now,
    notAfter: now + 24 * HOUR,
    graceUntil: now + HOUR,
  });
  await s.connectors.touch('c-a', '1.2.3', now - 100);
  await s.connectors.revoke('c-b', 'admin', now - 1_000);
  await s.connectors.register(connector('c-c', 'gone', 'CC01', now - HOUR + 1));
  await s.connectors.revoke('c-c', 'admin', now - 900);
  await s.connectors.delete('c-c', 'admin', now - 800);
  const audit = (action: string, actor = 'admin') => ({ actor, action, details: { via: 'test' } });
  await s.objects.put('app', 'wiki', { host: 'wiki.example', paths: ['/'] }, audit('app.create'), 0, now - 50);
  await s.objects.put(
    'app',
    'wiki',
    { host: 'wiki.example', paths: ['/', '/api'] },
    audit('app.update', 'bob'),
    1,
    now - 40,
  );
  await s.objects.put(
    'location',
    'office',
    { cidrs: ['192.0.2.0/24'], z: 1, a: 2 },
    audit('location.apply'),
    undefined,
    now - 30,
  );
  await s.objects.put(
    'policy',
    'proto',
    JSON.parse(HOSTILE[0]![1]) as Record<string, unknown>,
    audit('policy.create'),
    0,
    now - 20,
  );
  await s.keys.add({ kid: 'k1', purpose: 'session', material: 'm1' }, 'test', 1_000);
  await s.keys.add({ kid: 'k2', purpose: 'session', material: 'pxk1.sealed-looking-m2' }, 'test', 2_000);
  await s.keys.add({ kid: 'a1', purpose: 'assertion', material: '{"kty":"EC"}' }, 'test', 2_500);
  await s.users.put(
    user('bob', { groups: ['staff'], roles: ['ProxyAdministrator'], email: 'bob@example.com', totpSecret: 'S' }),
    'admin',
    'user.add',
  );
  await s.users.put(user('alice', { name: 'Alice', createdAt: 500 }), 'admin', 'user.add');
  await s.users.acceptTotpStep('bob', 5_000);
  await s.secrets.putIfAbsent('relay-ca', 'ca-value');
  await s.secrets.put('idp-keys', 'idp-value', 'test');
  for (const n of [1, 2, 3])
    await s.signIns.record(
      signInRecord({
        at: now - n,
        requestId: `r-${n}`,
        app: 'wiki',
        subject: n === 2 ? null : 'bob',
        ip: '192.0.2.1',
        country: n === 3 ? null : 'NL',
        userAgent: 'ua',
        result: n === 2 ? 'failure' : 'success',
        reason: n === 2 ? 'denied' : null,
        policies: [{ name: 'p', result: 'allow', n }],
        risk: n === 1 ? 'low' : 'none',
        detections: n === 1 ? [{ type: 'unfamiliarProperties', level: 'low', detail: 'new country' }] : [],
        city: n === 1 ? 'Amsterdam' : null,
        latitude: n === 1 ? 52.37 : null,
        longitude: n === 1 ? 4.89 : null,
        asn: n === 1 ? 1136 : null,
        network: n === 1 ? 'KPN' : null,
        methods: n === 1 ? ['pwd', 'otp'] : [],
        traceId: n === 1 ? '4bf92f3577b34da6a3ce929d0e0e4736' : null,
        kind: n === 3 ? 'bearer' : 'interactive',
      }),
    );
  await s.risk.addDetection({
    at: now - 4,
    subject: null,
    ip: '203.0.113.9',
    app: null,
    type: 'passwordSpray',
    level: 'high',
    signInId: null,
    requestId: null,
    details: { accounts: 20 },
  });
  await s.risk.confirm('bob', 'admin', now - 3);
  await s.sessions.endProviderSession('p-1', now, now + HOUR);
  await s.sessions.endProviderSession('p-old', 0, 10);
  const session = { app: 'wiki', subject: 'bob', createdAt: now - HOUR, clientIp: '192.0.2.1' };
  await s.sessions.create({ ...session, sid: 's-live', expiresAt: now + HOUR });
  await s.sessions.create({ ...session, sid: 's-out', expiresAt: now + HOUR, clientIp: null });
  await s.sessions.revoke('s-out', now - 500);
  await s.sessions.create({ ...session, sid: 's-gone', expiresAt: now - 1 });
  await s.sessions.putSigninState({
    state: 'st',
    app: 'wiki',
    nonce: 'n',
    verifier: 'v',
    returnTo: '/',
    createdAt: now,
    stepUp: false,
  });
  await s.idpArtifacts.upsert('Session', 's1', { uid: 'u1', accountId: 'alice' }, undefined);
  await s.idpArtifacts.upsert('AccessToken', 't1', { grantId: 'g1' }, 600);
  await s.idpArtifacts.consume('AccessToken', 't1');
  await s.idpArtifacts.upsert('AuthorizationCode', 'old', { grantId: 'g2' }, -1);
}

/** Names and specs (as JSON text, so `__proto__` is an own key) that no store may alter. */
const HOSTILE: readonly [name: string, spec: string][] = [
  ['proto', '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}'],
  [
    'it\'s "quoted" \\ back`',
    '{"quote":"it\'s \\"quoted\\" \\\\ back","sql":"\'); DROP TABLE managed_objects; --","dollar":"$1 $$ ${x}"}',
  ],
  [
    '日本語 ☃ 😀',
    '{"unicode":"日本語 ☃ 😀 \\u2028\\u2029 zero\\u200bwidth \\ufeff","nul":"a\\u0000b","controls":"\\t\\n\\r\\b\\f\\u001f","😀":{"ключ":"值"},"lone":"\\ud800 and \\udfff"}',
  ],
  [
    'nested',
    '{"z":1,"a":{"y":[1,2.5,-0.125,1e21,1e-7,null,true,false,{"deep":[[[{}]]]}],"b":{}},"10":"numeric key","":"empty key","big":9007199254740991,"same":{"z":[],"a":[[]]}}',
  ],
  ["'; DROP TABLE managed_objects; --", '{"a":"b"}'],
];
