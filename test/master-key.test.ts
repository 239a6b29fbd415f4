// The master key that seals shared relay secrets: key files and the environment
// (encodings, lengths, permissions), and sealed secrets under attack — the wrong key,
// the wrong purpose, every byte altered, truncated and garbage formats.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isProxyctlError } from '../src/errors.js';
import { parseRelayConfig } from '../src/config/relay-config.js';
import {
  MASTER_KEY_ENV,
  MasterKey,
  generateMasterKey,
  isSealed,
  loadMasterKey,
  parseMasterKey,
  sealedKeyId,
} from '../src/crypto/master-key.js';
import { tempDir } from './helpers/proc.js';

/** Refused with ERR_MASTER_KEY (and `details` matching `like`, when given). */
function refuses(t: Test, fn: () => unknown, what: string, like?: Record<string, unknown>): void {
  try {
    fn();
    t.fail(`${what}: accepted`);
  } catch (err) {
    if (!isProxyctlError(err, 'ERR_MASTER_KEY')) {
      t.fail(`${what}: refused with ${String(err)}, not ERR_MASTER_KEY`);
      return;
    }
    if (like) t.match(err.details, like, `${what}: refused (${JSON.stringify(err.details)})`);
    else t.pass(`${what}: refused`);
  }
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const HEX = '0123456789abcdef';
/** A different character of the same alphabet: the string keeps its shape, only the content changes. */
const other = (c: string, alphabet: string): string => alphabet[(alphabet.indexOf(c) + 1) % alphabet.length]!;

const key = parseMasterKey(generateMasterKey());
const otherKey = parseMasterKey(generateMasterKey());

t.test('generated keys: 32 random bytes, base64url, one line; ids are short fingerprints', async (t) => {
  const text = generateMasterKey();
  t.match(text, /^[A-Za-z0-9_-]{43}\n$/);
  t.equal(Buffer.from(text.trim(), 'base64url').length, 32);
  t.not(generateMasterKey(), text, 'random each time');
  t.match(key.id, /^[0-9a-f]{16}$/);
  t.not(key.id, otherKey.id, 'different keys, different ids');
  t.equal(parseMasterKey(text).id, parseMasterKey(text).id, 'the id depends on the key alone');
  t.equal(JSON.stringify({ key }), `{"key":{"id":"${key.id}"}}`, 'serialising a key shows its id, never the key');
  t.notMatch(JSON.stringify(Object.entries(key)), text.trim(), 'no enumerable field holds the key');
});

t.test('key encodings: one base64 value, either alphabet, whitespace around it only', async (t) => {
  const bytes = Buffer.alloc(32, 0xfb); // 0xfb…: "+" and "/" in base64, "-" and "_" in base64url
  const id = parseMasterKey(bytes.toString('base64url')).id;
  const accepted: [string, string][] = [
    ['base64url, no padding', bytes.toString('base64url')],
    ['base64 with padding', bytes.toString('base64')],
    ['base64 without padding', bytes.toString('base64').replace(/=$/, '')],
    ['base64url with padding', `${bytes.toString('base64url')}=`],
    ['trailing newline', `${bytes.toString('base64')}\n`],
    ['CRLF and spaces around', `  \t${bytes.toString('base64')}\r\n\r\n`],
  ];
  for (const [name, text] of accepted) t.equal(parseMasterKey(text).id, id, `${name}: the same key`);

  const good = bytes.toString('base64url');
  const refused: [string, string, Record<string, unknown>?][] = [
    ['empty', ''],
    ['only whitespace', ' \n\t '],
    ['31 bytes', Buffer.alloc(31, 1).toString('base64'), { bytes: 31 }],
    ['33 bytes', Buffer.alloc(33, 1).toString('base64'), { bytes: 33 }],
    ['16 bytes', Buffer.alloc(16, 1).toString('base64'), { bytes: 16 }],
    ['64 bytes', Buffer.alloc(64, 1).toString('base64'), { bytes: 64 }],
    ['hex of 32 bytes', Buffer.alloc(32, 0xab).toString('hex'), { bytes: 48 }],
    ['a space inside', `${good.slice(0, 20)} ${good.slice(20)}`],
    ['a newline inside', `${good.slice(0, 20)}\n${good.slice(20)}`],
    ['both alphabets', `+${good.slice(1, 42)}_`],
    ['stray bits in the last character', `${good.slice(0, 42)}${other(good[42]!, B64URL)}`],
    ['padding on a length not a multiple of four', `${good}==`],
    ['padding in the middle', `${good.slice(0, 20)}=${good.slice(20)}`],
    ['three padding characters', `${good.slice(0, 41)}===`],
    ['non-ASCII', `${good.slice(0, 42)}é`],
    ['a PEM block', `-----BEGIN KEY-----\n${bytes.toString('base64')}\n-----END KEY-----\n`],
    ['a JSON string', JSON.stringify(good)],
    ['one character', 'A'],
  ];
  for (const [name, text, like] of refused) refuses(t, () => parseMasterKey(text), name, like);
});

t.test('loadMasterKey: from the file or the environment, never both', async (t) => {
  const dir = tempDir(t);
  const text = generateMasterKey();
  const file = path.join(dir, 'master.key');
  writeFileSync(file, text, { mode: 0o600 });
  const id = parseMasterKey(text).id;

  t.equal(loadMasterKey({ env: {} }), undefined, 'neither: no master key');
  t.equal(loadMasterKey({ env: { [MASTER_KEY_ENV]: text } })?.id, id, 'from the environment');
  t.equal(loadMasterKey({ file, env: {} })?.id, id, 'from the file');
  t.equal(loadMasterKey({ file, env: { OTHER: 'x' } })?.id, id, 'other variables are ignored');
  refuses(t, () => loadMasterKey({ file, env: { [MASTER_KEY_ENV]: text } }), 'both set', { source: 'both' });
  refuses(t, () => loadMasterKey({ env: { [MASTER_KEY_ENV]: '' } }), 'an empty variable', {
    source: MASTER_KEY_ENV,
  });
  refuses(t, () => loadMasterKey({ env: { [MASTER_KEY_ENV]: 'c2hvcnQ=' } }), 'a short key in the variable', {
    source: MASTER_KEY_ENV,
    bytes: 5,
  });
  refuses(t, () => loadMasterKey({ file: path.join(dir, 'missing.key'), env: {} }), 'a missing file', {
    reason: 'ENOENT',
  });

  const write = (name: string, content: string | Buffer, mode = 0o600): string => {
    const p = path.join(dir, name);
    writeFileSync(p, content);
    chmodSync(p, mode); // not left to the umask
    return p;
  };
  const wrong: [string, string | Buffer][] = [
    ['an empty file', ''],
    ['a hex key', Buffer.alloc(32, 7).toString('hex')],
    ['a 31-byte key', Buffer.alloc(31, 7).toString('base64')],
    ['two keys', `${text}${text}`],
    ['binary', Buffer.alloc(32, 0x80)],
  ];
  for (const [name, content] of wrong) {
    const p = write(`${name.replace(/\W+/g, '-')}.key`, content);
    refuses(t, () => loadMasterKey({ file: p, env: {} }), `${name} in the file`, { source: new RegExp(p) });
  }
  refuses(t, () => loadMasterKey({ file: write('huge.key', `${text}${' '.repeat(2000)}`), env: {} }), 'a huge file', {
    reason: 'size',
  });

  for (const mode of [0o644, 0o640, 0o604, 0o660, 0o606, 0o610, 0o601, 0o620, 0o602, 0o777]) {
    const p = write(`mode-${mode.toString(8)}.key`, text, mode);
    refuses(t, () => loadMasterKey({ file: p, env: {} }), `mode ${mode.toString(8)}`, { reason: 'mode', mode });
  }
  for (const mode of [0o600, 0o400]) {
    const p = write(`ok-${mode.toString(8)}.key`, text, mode);
    t.equal(loadMasterKey({ file: p, env: {} })?.id, id, `mode ${mode.toString(8)} is accepted`);
  }
  const link = path.join(dir, 'link.key');
  symlinkSync(file, link);
  t.equal(loadMasterKey({ file: link, env: {} })?.id, id, 'a symlink to a private file (a mounted secret)');
  const open = write('open-target.key', text, 0o644);
  symlinkSync(open, path.join(dir, 'open-link.key'));
  refuses(t, () => loadMasterKey({ file: path.join(dir, 'open-link.key'), env: {} }), 'a symlink to an open file', {
    reason: 'mode',
  });

  const sub = path.join(dir, 'a-directory');
  mkdirSync(sub, { mode: 0o700 });
  refuses(t, () => loadMasterKey({ file: sub, env: {} }), 'a directory', { reason: 'not a file' });
  const fifo = path.join(dir, 'fifo.key');
  execFileSync('mkfifo', ['-m', '600', fifo]);
  refuses(t, () => loadMasterKey({ file: fifo, env: {} }), 'a FIFO, without waiting for a writer', {
    reason: 'not a file',
  });
});

t.test('wrap and unwrap: round trips', async (t) => {
  const secrets = [
    '',
    'x',
    '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n',
    'ключ 🔑 clé',
    '\u0000\u0001\u00ff',
    Buffer.alloc(100_000, 0x5a).toString('base64'),
  ];
  for (const s of secrets) {
    const sealed = key.wrap(s, 'ca-key');
    t.equal(key.unwrap(sealed, 'ca-key'), s, `round trip of ${s.length} characters`);
    t.ok(isSealed(sealed));
    t.equal(sealedKeyId(sealed), key.id);
    t.notMatch(sealed, s.length > 2 ? s.slice(0, 20) : '\u0000impossible', 'the plaintext does not show');
  }
  const a = key.wrap('same', 'session-key');
  const b = key.wrap('same', 'session-key');
  t.not(a, b, 'a fresh nonce each time');
  t.not(a.split('.')[2], b.split('.')[2], 'nonces differ');
  t.match(a, new RegExp(`^pxk1\\.${key.id}\\.[A-Za-z0-9_-]{16}\\.[A-Za-z0-9_-]*\\.[A-Za-z0-9_-]{22}$`));
  const reloaded = parseMasterKey(generateMasterKey());
  t.not(reloaded.id, key.id);
  t.throws(() => key.wrap('\ud800', 'p'), RangeError, 'a lone surrogate is refused, not silently replaced');
  for (const bad of ['', 'with space', 'tab\t', 'é', 'x'.repeat(201)]) {
    t.throws(() => key.wrap('s', bad), RangeError, `purpose ${JSON.stringify(bad)} refused on wrap`);
    t.throws(() => key.unwrap(a, bad), RangeError, `purpose ${JSON.stringify(bad)} refused on unwrap`);
  }
  t.throws(() => new MasterKey(key as never), 'only a 32-byte secret KeyObject makes a key');
});

t.test('the wrong key: refused, naming both key ids', async (t) => {
  const sealed = key.wrap('the CA key', 'ca-key');
  refuses(t, () => otherKey.unwrap(sealed, 'ca-key'), 'another master key', {
    reason: 'key',
    sealedWith: key.id,
    masterKey: otherKey.id,
  });
  // The other key's id written in: the id matches, the key does not.
  const relabelled = sealed.replace(`.${key.id}.`, `.${otherKey.id}.`);
  refuses(t, () => otherKey.unwrap(relabelled, 'ca-key'), 'a relabelled secret under the other key', {
    reason: 'integrity',
  });
  refuses(t, () => key.unwrap(relabelled, 'ca-key'), 'a relabelled secret under the right key', { reason: 'key' });
});

t.test('the wrong purpose: a sealed CA key is not a session key', async (t) => {
  const sealed = key.wrap('material', 'ca-key');
  for (const purpose of ['session-key', 'ca-key ', 'ca-keY', 'ca', 'ca-key2', 'idp-jwks']) {
    try {
      key.unwrap(sealed, purpose);
      t.fail(`purpose ${JSON.stringify(purpose)}: accepted`);
    } catch (err) {
      t.ok(
        isProxyctlError(err, 'ERR_MASTER_KEY') || err instanceof RangeError,
        `purpose ${JSON.stringify(purpose)}: refused`,
      );
    }
  }
  t.equal(key.unwrap(sealed, 'ca-key'), 'material');
});

t.test('tampering: every character, every bit class of every byte, is refused', async (t) => {
  const sealed = key.wrap('a secret worth altering, long enough for several blocks', 'assertion-key');
  const dots = [...sealed].map((c, i) => (c === '.' ? i : -1)).filter((i) => i >= 0);
  t.equal(dots.length, 4);
  let refusedAll = true;
  for (let i = 0; i < sealed.length; i++) {
    const c = sealed[i]!;
    // Stay inside the part's alphabet, so the change reaches the cryptography, not the parser.
    const alphabet = i < dots[0]! ? 'pxk1' : i < dots[1]! ? HEX : B64URL;
    const swapped = c === '.' ? '_' : alphabet === 'pxk1' ? (c === '1' ? '2' : 'q') : other(c, alphabet);
    const altered = sealed.slice(0, i) + swapped + sealed.slice(i + 1);
    try {
      key.unwrap(altered, 'assertion-key');
      refusedAll = false;
      t.fail(`character ${i} (${c} → ${swapped}) accepted`);
    } catch (err) {
      if (!isProxyctlError(err, 'ERR_MASTER_KEY')) {
        refusedAll = false;
        t.fail(`character ${i}: ${String(err)}`);
      }
    }
  }
  t.ok(refusedAll, `all ${sealed.length} single-character changes refused`);

  const [v, id, ...parts] = sealed.split('.') as [string, string, string, string, string];
  const names = ['nonce', 'ciphertext', 'tag'];
  let flips = 0;
  parts.forEach((part, p) => {
    const bytes = Buffer.from(part, 'base64url');
    for (let i = 0; i < bytes.length; i++) {
      for (const bit of [0x01, 0x80, 0xff]) {
        const copy = Buffer.from(bytes);
        copy[i]! ^= bit;
        const segs = [...parts];
        segs[p] = copy.toString('base64url');
        try {
          key.unwrap([v, id, ...segs].join('.'), 'assertion-key');
          t.fail(`${names[p]} byte ${i} ^ ${bit} accepted`);
        } catch (err) {
          if (!isProxyctlError(err, 'ERR_MASTER_KEY')) t.fail(`${names[p]} byte ${i}: ${String(err)}`);
          flips++;
        }
      }
    }
  });
  t.ok(flips > 100, `${flips} bit flips across nonce, ciphertext and tag refused`);

  const [n, c, tag] = parts;
  const rearranged: [string, string][] = [
    ['ciphertext and tag swapped', [v, id, n, tag, c].join('.')],
    ['ciphertext dropped', [v, id, n, '', tag].join('.')],
    ['a block of ciphertext dropped', [v, id, n, c.slice(0, -22), tag].join('.')],
    ['ciphertext doubled', [v, id, n, c + c, tag].join('.')],
    ['another secret spliced in', [v, id, n, key.wrap('other', 'assertion-key').split('.')[3]!, tag].join('.')],
    ['another nonce', [v, id, key.wrap('x', 'assertion-key').split('.')[2]!, c, tag].join('.')],
  ];
  for (const [name, text] of rearranged) refuses(t, () => key.unwrap(text, 'assertion-key'), name);
});

t.test('truncated and garbage formats', async (t) => {
  const sealed = key.wrap('abc', 'ca-key');
  let prefixes = 0;
  for (let n = 0; n < sealed.length; n++) {
    try {
      key.unwrap(sealed.slice(0, n), 'ca-key');
      t.fail(`prefix of ${n} characters accepted`);
    } catch (err) {
      if (!isProxyctlError(err, 'ERR_MASTER_KEY')) t.fail(`prefix ${n}: ${String(err)}`);
      else prefixes++;
    }
  }
  t.equal(prefixes, sealed.length, 'every truncation refused');
  let withUrlSafeChars = sealed;
  while (!/[-_]/.test(withUrlSafeChars)) withUrlSafeChars = key.wrap('abc', 'ca-key');
  const garbage: [string, unknown, Record<string, unknown>?][] = [
    ['empty', ''],
    ['plain text (a secret stored unsealed)', '-----BEGIN PRIVATE KEY-----', { reason: 'format' }],
    ['the format name alone', 'pxk1'],
    ['only dots', 'pxk1....'],
    ['a future format', sealed.replace(/^pxk1/, 'pxk2'), { reason: 'format' }],
    ['upper-case format', sealed.replace(/^pxk1/, 'PXK1')],
    ['upper-case key id', sealed.replace(key.id, key.id.toUpperCase())],
    ['a short key id', sealed.replace(key.id, key.id.slice(1))],
    ['whitespace around', ` ${sealed}\n`],
    ['padding on the tag', `${sealed}==`],
    ['a sixth part', `${sealed}.AAAA`],
    ['standard base64 characters', withUrlSafeChars.replace(/-/g, '+').replace(/_/g, '/')],
    ['JSON', JSON.stringify(sealed)],
    ['not a string', undefined],
    ['a number', 42],
  ];
  for (const [name, text, like] of garbage) refuses(t, () => key.unwrap(text as string, 'ca-key'), name, like);
  t.notOk(isSealed('pxk1.x'));
  t.equal(sealedKeyId('nope'), undefined);
  t.equal(sealedKeyId(42 as never), undefined);

  // A non-canonical spelling of the same bytes is refused too: one secret, one string.
  const tag = sealed.split('.')[4]!;
  const last = tag[21]!;
  const lenient = `${sealed.slice(0, -1)}${B64URL[B64URL.indexOf(last) ^ 1]}`;
  t.same(Buffer.from(lenient.split('.')[4]!, 'base64url'), Buffer.from(tag, 'base64url'), 'the same bytes decoded');
  refuses(t, () => key.unwrap(lenient, 'ca-key'), 'a lenient spelling of the tag', { reason: 'integrity' });
  try {
    key.unwrap('-----BEGIN PRIVATE KEY----- secret material', 'ca-key');
  } catch (err) {
    t.notMatch((err as Error).message, 'secret material', 'the refused text is never echoed');
  }
});

t.test('config: secrets.masterKeyFile', async (t) => {
  const secrets = (yaml: string, file = '/etc/proxyctl/relay.yaml') => parseRelayConfig(yaml, file).secrets;
  t.same(secrets('{}'), { masterKeyFile: undefined }, 'none by default');
  t.same(secrets('secrets: {}'), { masterKeyFile: undefined });
  t.same(
    secrets('secrets: { masterKeyFile: master.key }'),
    { masterKeyFile: '/etc/proxyctl/master.key' },
    'a relative path is resolved from the config file',
  );
  t.same(secrets('secrets: { masterKeyFile: /run/secrets/key }'), { masterKeyFile: '/run/secrets/key' });
  for (const [yaml, at] of [
    ['secrets: { masterKey: abc }', 'secrets.masterKey'],
    ['secrets: { masterKeyFile: "" }', 'secrets.masterKeyFile'],
    ['secrets: { masterKeyFile: 42 }', 'secrets.masterKeyFile'],
    ['secrets: { masterKeyFile: [a] }', 'secrets.masterKeyFile'],
    ['secrets: master.key', 'secrets'],
  ]) {
    try {
      parseRelayConfig(yaml!, 'relay.yaml');
      t.fail(`${yaml}: accepted`);
    } catch (err) {
      const issues = (isProxyctlError(err, 'ERR_CONFIG_INVALID') ? err.details?.['issues'] : []) as { path: string }[];
      t.same(
        issues.map((i) => i.path),
        [at],
        `${yaml}: refused at ${at}`,
      );
    }
  }
});
