// The TLS settings every proxyctl endpoint uses: the public listener (and each
// SNI context it switches to), the connector API, and the connector as client.
//
// Protocol: TLS 1.2 at least (SPEC: the connector's connection is TLS 1.2+).
//
// Cipher order: Node's own list, with AES-128-GCM moved ahead of AES-256-GCM
// for TLS 1.3 (Node's TLS 1.2 list already starts with AES-128-GCM), and the
// server's order honoured. Every byte a user moves is decrypted and encrypted
// again by the relay, and again by the connector: with AES-NI, AES-128-GCM
// costs 10 rounds a block where AES-256-GCM costs 14. A 1 GiB upload through
// relay and connector measured 2% less relay and 9% less connector CPU (bench A/B,
// README, Performance). 128-bit AES is the first choice of Mozilla's
// "intermediate" server configuration and of the large CDNs.
//
// ChaCha20-Poly1305 keeps its place for clients that ask for it first (phones
// without AES hardware, where it is the faster cipher): SSL_OP_PRIORITIZE_CHACHA.
import { constants } from 'node:crypto';
import { DEFAULT_CIPHERS } from 'node:tls';

const TLS13_ORDER = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];

/** Node's default cipher string with the TLS 1.3 suites in the order above. */
export const CIPHERS = [...TLS13_ORDER, ...DEFAULT_CIPHERS.split(':').filter((c) => !TLS13_ORDER.includes(c))].join(
  ':',
);

/** For servers (tls.createServer, https.createServer, createSecureContext of a server). */
export const SERVER_TLS = {
  minVersion: 'TLSv1.2' as const,
  ciphers: CIPHERS,
  honorCipherOrder: true,
  secureOptions: constants.SSL_OP_PRIORITIZE_CHACHA,
};

/** For the connector's connections to the relay. */
export const CLIENT_TLS = {
  minVersion: 'TLSv1.2' as const,
  ciphers: CIPHERS,
};
