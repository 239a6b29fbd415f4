// Which cipher and protocol each endpoint negotiates: AES-128-GCM first, the
// server's order honoured, ChaCha20 for clients that put it first, AES-256 for
// clients that offer only that, TLS 1.2 still served, TLS 1.1 refused. Checked
// on the relay-CA certificate, on an app's own certificate (an SNI context),
// on the connector API, and from the connector's side.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { connect, createServer, type ConnectionOptions } from 'node:tls';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { loadOrCreateCa } from '../src/crypto/ca.js';
import { CIPHERS, CLIENT_TLS } from '../src/crypto/tls-policy.js';
import { tlsOptions } from '../src/connector/relay-client.js';
import { startHarness } from './helpers/harness.js';
import { tempDir } from './helpers/proc.js';

interface Negotiated {
  cipher: string;
  version: string;
}

function handshake(port: number, opts: ConnectionOptions): Promise<Negotiated> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts }, () => {
      const negotiated = { cipher: s.getCipher().standardName, version: s.getProtocol() ?? '' };
      s.destroy();
      resolve(negotiated);
    });
    s.on('error', reject);
  });
}

t.test('the cipher list keeps every Node default and puts AES-128-GCM first', async (t) => {
  const names = CIPHERS.split(':');
  t.same(names.slice(0, 3), ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']);
  t.equal(new Set(names).size, names.length, 'no suite twice');
  t.ok(
    names.includes('ECDHE-RSA-AES128-GCM-SHA256') && names.includes('!aNULL'),
    "Node's TLS 1.2 list and exclusions kept",
  );
  t.equal(CLIENT_TLS.minVersion, 'TLSv1.2');
});

t.test('negotiated ciphers on every listener', async (t) => {
  const dir = tempDir(t);
  const other = await loadOrCreateCa(path.join(dir, 'public-ca'));
  const own = await other.issueServerCertificate(['own.test'], 86_400_000);
  writeFileSync(path.join(dir, 'own.pem'), own.certPem + own.keyPem);
  const h = await startHarness(t, {
    yaml: () => `apps:
  - { name: own, externalUrl: "https://own.test/", internalUrl: "http://127.0.0.1:9/", preauth: passthrough, tls: { certFile: "${path.join(dir, 'own.pem')}" } }
  - { name: plain, externalUrl: "https://plain.test/", internalUrl: "http://127.0.0.1:9/", preauth: passthrough }
`,
  });
  const apiPort = Number(new URL(h.apiUrl).port);
  const listeners: [string, number, string][] = [
    ['public listener, relay-CA certificate', h.publicPort, 'plain.test'],
    ["public listener, an app's own certificate", h.publicPort, 'own.test'],
    ['connector API', apiPort, 'localhost'],
  ];
  for (const [what, port, servername] of listeners) {
    t.test(what, async (t) => {
      // Node's default client order puts AES-256 first: the server's order wins.
      t.same(
        await handshake(port, { servername }),
        { cipher: 'TLS_AES_128_GCM_SHA256', version: 'TLSv1.3' },
        'a default client gets AES-128-GCM',
      );
      t.same(
        await handshake(port, {
          servername,
          ciphers: 'TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256',
        }),
        { cipher: 'TLS_CHACHA20_POLY1305_SHA256', version: 'TLSv1.3' },
        'a client that asks for ChaCha20 first gets it',
      );
      t.same(
        await handshake(port, { servername, ciphers: 'TLS_AES_256_GCM_SHA384' }),
        { cipher: 'TLS_AES_256_GCM_SHA384', version: 'TLSv1.3' },
        'a client offering only AES-256 is served',
      );
      const v12 = await handshake(port, { servername, maxVersion: 'TLSv1.2' });
      t.equal(v12.version, 'TLSv1.2');
      t.match(v12.cipher, /^TLS_ECDHE_(ECDSA|RSA)_WITH_AES_128_GCM_SHA256$/, 'TLS 1.2: ECDHE with AES-128-GCM');
      await t.rejects(
        handshake(port, { servername, maxVersion: 'TLSv1.1', minVersion: 'TLSv1.1' }),
        'TLS 1.1 is refused',
      );
    });
  }

  t.test("the connector's own connections use AES-128-GCM", async (t) => {
    // Against a server that follows the client's order (Node servers honour their
    // own unless told not to), so the connector's offer decides: a default Node
    // client's offer puts AES-256 first.
    const server = createServer({ cert: own.certPem, key: own.keyPem, honorCipherOrder: false });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
    server.on('secureConnection', (s) => s.on('error', () => undefined));
    const port = (server.address() as AddressInfo).port;
    t.same(
      await handshake(port, {
        ...tlsOptions({ caPem: other.certPem }),
        servername: 'own.test',
        rejectUnauthorized: true,
      }),
      { cipher: 'TLS_AES_128_GCM_SHA256', version: 'TLSv1.3' },
      "the connector's offer",
    );
    t.same(
      await handshake(port, { servername: 'own.test' }),
      { cipher: 'TLS_AES_256_GCM_SHA384', version: 'TLSv1.3' },
      "a default Node client's offer, for contrast",
    );
    t.same(
      await handshake(apiPort, {
        ...CLIENT_TLS,
        servername: 'localhost',
        ca: h.relay.ca.certPem,
        rejectUnauthorized: true,
      }),
      { cipher: 'TLS_AES_128_GCM_SHA256', version: 'TLSv1.3' },
      'to the connector API',
    );
  });
});
