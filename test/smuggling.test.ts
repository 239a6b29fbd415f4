// Request smuggling and parser abuse against the public listener, byte by byte
// over raw TLS: Node's strict HTTP parser plus the relay's own checks. Every
// malformed or ambiguous request must end in a 4xx (or 501 for unknown
// transfer codings) or a closed connection, and never reach the backend
// (counted before and after).
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { startBackend, type Backend, type EchoBody } from './helpers/backend.js';
import { startHarness, type Harness } from './helpers/harness.js';

const APP_HOST = 'files.test';
const OTHER_HOST = 'other.test';
const UNPUBLISHED = 'nowhere.test';
const SMALL_HOST = 'small.test';

interface Response {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}
interface Exchange {
  /** Complete responses, in order. */
  responses: Response[];
  /** The relay closed (or reset) the connection. */
  closed: boolean;
  /** Everything received, for messages. */
  raw: string;
}

/** Complete HTTP/1.1 responses at the front of buf; a close-delimited body counts only once closed. */
function parseResponses(buf: Buffer, closed: boolean): Response[] {
  const out: Response[] = [];
  let at = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', at);
    if (end < 0) return out;
    const lines = buf.subarray(at, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!m) return out;
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    const status = Number(m[1]);
    let p = end + 4;
    let body: Buffer;
    if (status < 200 || status === 204 || status === 304) {
      body = Buffer.alloc(0);
    } else if (headers['transfer-encoding']?.toLowerCase() === 'chunked') {
      const parts: Buffer[] = [];
      for (;;) {
        const eol = buf.indexOf('\r\n', p);
        if (eol < 0) return out;
        const size = parseInt(buf.subarray(p, eol).toString('latin1'), 16);
        if (Number.isNaN(size)) return out;
        if (size === 0) {
          // The last chunk: an empty line, or trailer fields and then an empty line.
          if (buf.length < eol + 4) return out;
          if (buf.subarray(eol + 2, eol + 4).toString('latin1') === '\r\n') {
            p = eol + 4;
          } else {
            const trailerEnd = buf.indexOf('\r\n\r\n', eol + 2);
            if (trailerEnd < 0) return out;
            p = trailerEnd + 4;
          }
          break;
        }
        if (buf.length < eol + 2 + size + 2) return out;
        parts.push(buf.subarray(eol + 2, eol + 2 + size));
        p = eol + 2 + size + 2;
      }
      body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (buf.length < p + n) return out;
      body = buf.subarray(p, p + n);
      p += n;
    } else {
      if (!closed) return out;
      body = buf.subarray(p);
      p = buf.length;
    }
    if (status >= 200) out.push({ status, headers, body });
    at = p;
  }
}

const describeExchange = (r: Exchange): string =>
  `${r.responses.map((x) => x.status).join(', ') || 'no response'}${r.closed ? ', closed' : ', open'}`;

t.test('request smuggling and parser abuse over raw TLS', async (t) => {
  const backend: Backend = await startBackend();
  t.teardown(() => backend.close());
  const app = (name: string, host: string) =>
    `  - name: ${name}\n    externalUrl: "https://${host}/"\n    internalUrl: "${backend.origin}/${name}/"\n    preauth: passthrough\n`;
  const h: Harness = await startHarness(t, {
    yaml: () =>
      `apps:\n${app('main', APP_HOST)}${app('other', OTHER_HOST)}${app('small', SMALL_HOST)}    maxBodyBytes: 16\n`,
  });
  await h.addConnector();
  const ca = h.relay.ca.certPem;
  const port = h.publicPort;
  const HOST = `${APP_HOST}:${port}`;
  const open = new Set<TLSSocket>();
  t.teardown(() => {
    for (const s of open) s.destroy();
  });

  function connect(servername: string | undefined): TLSSocket {
    const s = tlsConnect({
      host: '127.0.0.1',
      port,
      ca,
      ALPNProtocols: ['http/1.1'],
      ...(servername ? { servername } : {}),
      // Unpublished names are not in the relay certificate; the test wants the relay's answer anyway.
      checkServerIdentity: () => undefined,
    });
    open.add(s);
    s.once('close', () => open.delete(s));
    s.on('error', () => undefined);
    return s;
  }

  /** Sends bytes on a fresh connection; resolves on close, or `settleMs` after the last complete response. */
  function exchange(
    payload: string | Buffer,
    o: { servername?: string; settleMs?: number; timeoutMs?: number } = {},
  ): Promise<Exchange> {
    return new Promise((resolve) => {
      const s = connect(o.servername ?? APP_HOST);
      let buf = Buffer.alloc(0);
      let settle: NodeJS.Timeout | undefined;
      let done = false;
      let seen = 0;
      const finish = (closed: boolean) => {
        if (done) return;
        done = true;
        clearTimeout(settle);
        clearTimeout(overall);
        s.destroy();
        resolve({ responses: parseResponses(buf, closed), closed, raw: buf.toString('latin1') });
      };
      const overall = setTimeout(() => finish(false), o.timeoutMs ?? 5000);
      s.once('secureConnect', () => s.write(payload));
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        const n = parseResponses(buf, false).length;
        if (n > seen) {
          seen = n;
          clearTimeout(settle);
          settle = setTimeout(() => finish(false), o.settleMs ?? 400);
        }
      });
      s.once('close', () => finish(true));
    });
  }

  /**
   * The request is refused (a 4xx, or the connection closed without any answer),
   * nothing else is answered on the connection, and the backend saw nothing.
   */
  interface RefusedOptions {
    servername?: string;
    /** Whole-case todo: the relay does not refuse this yet. */
    todo?: string;
    /** Answers accepted besides 4xx (e.g. 501 for an unknown transfer coding). */
    allow?: number[];
    /** The precise status expected; `statusTodo` when only that part is not done yet. */
    status?: number;
    statusTodo?: string;
  }
  /**
   * What the backend saw since `before`, up to a marker request sent now on a new
   * connection: anything the relay forwarded earlier reaches the backend ahead of it.
   */
  let markers = 0;
  async function seenSince(before: number): Promise<string[]> {
    const marker = `/probe?marker=${++markers}`;
    const r = await exchange(req([`GET ${marker} HTTP/1.1`, `Host: ${HOST}`, 'Connection: close']));
    if (r.responses[0]?.status !== 200) throw new Error(`marker request failed: ${describeExchange(r)}`);
    const seen = backend.seen.slice(before).map((x) => `${x.method} ${x.url}`);
    const at = seen.indexOf(`GET /main${marker}`);
    if (at < 0) throw new Error('the backend did not see the marker request');
    return seen.slice(0, at);
  }

  async function refused(t: Test, payload: string | Buffer, o: RefusedOptions = {}) {
    const before = backend.seen.length;
    const r = await exchange(payload, o);
    const seen = await seenSince(before);
    const extra = o.todo ? { todo: o.todo } : {};
    const first = r.responses[0];
    const okStatus = (s: number) => (s >= 400 && s < 500) || (o.allow ?? []).includes(s);
    t.ok(first ? okStatus(first.status) : r.closed, `refused: ${describeExchange(r)}`, extra);
    t.notOk(
      r.responses.some((x) => !okStatus(x.status)),
      'no other answer on the connection',
      extra,
    );
    t.same(seen, [], 'the backend saw nothing', extra);
    if (o.status !== undefined)
      t.equal(first?.status, o.status, `answered ${o.status}`, o.statusTodo ? { todo: o.statusTodo } : extra);
    return r;
  }

  /** A well-formed request that must still work (so the refusals above are not the helper's doing). */
  async function accepted(t: Test, payload: string | Buffer, o: { servername?: string; todo?: string } = {}) {
    const before = backend.seen.length;
    const r = await exchange(payload, o);
    const extra = o.todo ? { todo: o.todo } : {};
    t.equal(r.responses[0]?.status, 200, `accepted: ${describeExchange(r)}`, extra);
    t.equal(backend.seen.length - before, 1, 'the backend saw it once', extra);
    return r;
  }

  const req = (lines: string[], body = '') => `${lines.join('\r\n')}\r\n\r\n${body}`;

  // Started now, checked last: Node's headers timeout takes tens of seconds today.
  const slow = slowloris(
    connect(APP_HOST),
    `GET /probe HTTP/1.1\r\nHost: ${HOST}\r\nX-Slow: ${'a'.repeat(500)}`,
    500,
    60_000,
  );

  await t.test('controls: well-formed requests pass, one answer each', async (t) => {
    await accepted(t, req(['GET /probe HTTP/1.1', `Host: ${HOST}`]));
    await accepted(t, req(['POST /probe HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 5'], 'hello'));
    await accepted(
      t,
      req(['POST /probe HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked'], '5\r\nhello\r\n0\r\n\r\n'),
    );
    await accepted(t, req(['GET /probe HTTP/1.1', `Host: FILES.TEST:${port}`]), { servername: APP_HOST });
    const before = backend.seen.length;
    const two = await exchange(
      req(['GET /probe?n=1 HTTP/1.1', `Host: ${HOST}`]) + req(['GET /probe?n=2 HTTP/1.1', `Host: ${HOST}`]),
    );
    t.same(
      two.responses.map((r) => r.status),
      [200, 200],
      'two pipelined requests get two answers (the helper sees a second response)',
    );
    t.same(
      backend.seen.slice(before).map((s) => s.url),
      ['/main/probe?n=1', '/main/probe?n=2'],
    );
  });

  await t.test('Content-Length and Transfer-Encoding together', async (t) => {
    await refused(
      t,
      req(
        ['POST /probe HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 5', 'Transfer-Encoding: chunked'],
        '0\r\n\r\nGET /smuggled HTTP/1.1\r\n',
      ),
    );
    await refused(
      t,
      req(
        ['POST /probe HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked', 'Content-Length: 30'],
        '0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n',
      ),
    );
  });

  await t.test('duplicate and differing Content-Length', async (t) => {
    await refused(t, req(['POST /probe HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 5', 'Content-Length: 5'], 'hello'));
    await refused(
      t,
      req(['POST /probe HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 5', 'Content-Length: 6'], 'hello!'),
    );
    await refused(t, req(['POST /probe HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 5, 5'], 'hello'));
  });

  await t.test('invalid Content-Length', async (t) => {
    for (const cl of ['-1', '1e3', '0x10', '+5', '5 5', '']) {
      await t.test(`Content-Length: ${JSON.stringify(cl)}`, async (t) => {
        await refused(t, req(['POST /probe HTTP/1.1', `Host: ${HOST}`, `Content-Length: ${cl}`], 'hello'));
      });
    }
  });

  await t.test('Transfer-Encoding other than chunked', async (t) => {
    await t.test('chunked, identity (chunked not last)', async (t) => {
      await refused(
        t,
        req(
          ['POST /probe HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked, identity'],
          '5\r\nhello\r\n0\r\n\r\n',
        ),
      );
    });
    await t.test('gzip, chunked', async (t) => {
      await refused(
        t,
        req(['POST /probe HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: gzip, chunked'], '5\r\nhello\r\n0\r\n\r\n'),
        { allow: [501] },
      );
    });
    await t.test('an unknown coding, a duplicated header', async (t) => {
      await refused(
        t,
        req(['POST /probe HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: xchunked'], '5\r\nhello\r\n0\r\n\r\n'),
        { allow: [501] },
      );
      await refused(
        t,
        req(
          ['POST /probe HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'],
          '5\r\nhello\r\n0\r\n\r\n',
        ),
        { allow: [501] },
      );
    });
    await t.test('invalid chunk size', async (t) => {
      await refused(
        t,
        req(['POST /probe HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked'], '-5\r\nhello\r\n0\r\n\r\n'),
      );
      await refused(
        t,
        req(['POST /probe HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked'], '0x5\r\nhello\r\n0\r\n\r\n'),
      );
    });
  });

  await t.test('nothing pipelined behind a close-refusal is processed', async (t) => {
    const next = req(['GET /pipelined HTTP/1.1', `Host: ${HOST}`]);
    const refusals: [string, string][] = [
      [
        'Transfer-Encoding: gzip, chunked',
        req(['POST /probe HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: gzip, chunked'], '5\r\nhello\r\n0\r\n\r\n'),
      ],
      [
        'Transfer-Encoding: xchunked',
        req(['POST /probe HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: xchunked'], '0\r\n\r\n'),
      ],
      ['Transfer-Encoding: identity', req(['GET /probe HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: identity'])],
      ['duplicate Host', req(['GET /probe HTTP/1.1', `Host: ${HOST}`, `Host: ${HOST}`])],
      ['duplicate Host, other app', req(['GET /probe HTTP/1.1', `Host: ${HOST}`, `Host: ${OTHER_HOST}:${port}`])],
      [
        'body over the app limit',
        req(['POST /probe HTTP/1.1', `Host: ${SMALL_HOST}:${port}`, 'Content-Length: 64'], 'x'.repeat(64)),
      ],
    ];
    for (const [what, first] of refusals) {
      await t.test(`${what}, then a request in the same packet`, async (t) => {
        const r = await refused(t, first + next + next, {
          allow: [501],
          servername: what.startsWith('body') ? SMALL_HOST : APP_HOST,
        });
        t.equal(r.responses.length, 1, 'one answer, then the connection closes');
        t.equal(r.responses[0]?.headers['connection'], 'close');
      });
      await t.test(`${what}, then a request in the next packet`, async (t) => {
        const before = backend.seen.length;
        const s = connect(what.startsWith('body') ? SMALL_HOST : APP_HOST);
        let got = '';
        s.on('data', (d: Buffer) => (got += d.toString('latin1')));
        await new Promise((r) => s.once('secureConnect', r));
        s.write(first);
        s.write(next);
        await new Promise((r) => s.once('close', r));
        const seen = await seenSince(before);
        t.equal(got.match(/^HTTP\/1\.1 /gm)?.length, 1, `one answer: ${got.split('\r\n')[0]}`);
        t.same(seen, [], 'the backend saw nothing');
      });
    }
  });

  await t.test('obsolete line folding', async (t) => {
    await refused(t, req(['GET /probe HTTP/1.1', `Host: ${HOST}`, 'X-Folded: a', ' b']));
    await refused(t, req(['GET /probe HTTP/1.1', `Host: ${HOST}`, 'X-Folded: a', '\tb']));
    await refused(
      t,
      req(['POST /probe HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding:', ' chunked'], '5\r\nhello\r\n0\r\n\r\n'),
    );
  });

  await t.test('bare LF line endings', async (t) => {
    await refused(t, `GET /probe HTTP/1.1\nHost: ${HOST}\n\n`);
    await refused(t, `GET /probe HTTP/1.1\r\nHost: ${HOST}\nX-A: b\r\n\r\n`);
    await refused(t, `POST /probe HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 5\n\r\nhello`);
  });

  await t.test('invalid header names', async (t) => {
    const names: [string, string][] = [
      ['space inside', 'X Foo: bar'],
      ['space before the colon', 'Transfer-Encoding : chunked'],
      ['leading colon', ':authority: evil.test'],
      ['leading space', ' X-Foo: bar'],
      ['double quote', 'X-F"o: bar'],
      ['parenthesis', 'X-F(o): bar'],
      ['DEL', 'X-F\x7fo: bar'],
      ['non-ASCII', 'X-F\xe9o: bar'],
      ['empty', ': bar'],
    ];
    for (const [what, line] of names) {
      await t.test(what, async (t) => {
        await refused(t, Buffer.from(req(['GET /probe HTTP/1.1', `Host: ${HOST}`, line]), 'latin1'));
      });
    }
  });

  await t.test('control characters in a header value', async (t) => {
    await refused(t, req(['GET /probe HTTP/1.1', `Host: ${HOST}`, 'X-Foo: a\x00b']));
    await refused(t, req(['GET /probe HTTP/1.1', `Host: ${HOST}`, 'X-Foo: a\rb']));
    await refused(t, req(['GET /probe HTTP/1.1', `Host: ${HOST}\x00.evil.test`]));
  });

  await t.test('a request hidden in a body stays body', async (t) => {
    const smuggled = `GET /smuggled HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`;
    const sha = createHash('sha256').update(smuggled).digest('hex');
    for (const framing of ['content-length', 'chunked'] as const) {
      await t.test(framing, async (t) => {
        const before = backend.seen.length;
        const head =
          framing === 'content-length'
            ? `Content-Length: ${Buffer.byteLength(smuggled)}`
            : 'Transfer-Encoding: chunked';
        const body =
          framing === 'content-length'
            ? smuggled
            : `${Buffer.byteLength(smuggled).toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`;
        const r = await exchange(req(['POST /probe HTTP/1.1', `Host: ${HOST}`, head], body), { settleMs: 700 });
        const seen = await seenSince(before);
        t.same(
          r.responses.map((x) => x.status),
          [200],
          `exactly one answer (${describeExchange(r)})`,
        );
        t.same(seen, ['POST /main/probe'], 'the backend saw exactly one request');
        const echo = JSON.parse(r.responses[0]?.body.toString() ?? '{}') as Partial<EchoBody>;
        t.equal(echo.bodyLength, Buffer.byteLength(smuggled), 'with the smuggled text as its body');
        t.equal(echo.bodySha256, sha, 'byte for byte');
      });
    }
  });

  await t.test('request targets other than origin-form', async (t) => {
    await refused(t, req(['GET https://evil.test/ HTTP/1.1', `Host: ${HOST}`]));
    await refused(t, req([`GET https://${HOST}/probe HTTP/1.1`, `Host: ${HOST}`]));
    await refused(t, req(['GET evil.test/probe HTTP/1.1', `Host: ${HOST}`]));
    await refused(t, req(['OPTIONS * HTTP/1.1', `Host: ${HOST}`]));
    await refused(t, req(['CONNECT evil.test:443 HTTP/1.1', 'Host: evil.test:443']));
  });

  await t.test('Host header and TLS SNI disagree', async (t) => {
    await t.test('SNI of one app, Host of another published app', async (t) => {
      await refused(t, req(['GET /probe HTTP/1.1', `Host: ${OTHER_HOST}:${port}`]), {
        servername: APP_HOST,
        status: 421,
      });
    });
    await t.test('SNI of an app, Host unpublished', async (t) => {
      await refused(t, req(['GET /probe HTTP/1.1', `Host: ${UNPUBLISHED}:${port}`]), { servername: APP_HOST });
    });
    await t.test('SNI unpublished, Host of an app', async (t) => {
      await refused(t, req(['GET /probe HTTP/1.1', `Host: ${HOST}`]), { servername: UNPUBLISHED, status: 421 });
    });
    await t.test('the same host: case, port and a trailing dot do not matter', async (t) => {
      await accepted(t, req(['GET /probe HTTP/1.1', `Host: FILES.Test:${port}`]), { servername: APP_HOST });
      await accepted(t, req(['GET /probe HTTP/1.1', `Host: ${APP_HOST}`]), { servername: APP_HOST });
      await accepted(t, req(['GET /probe HTTP/1.1', `Host: ${APP_HOST}.:${port}`]), { servername: APP_HOST });
    });
    await t.test('two Host headers', async (t) => {
      await refused(t, req(['GET /probe HTTP/1.1', `Host: ${HOST}`, `Host: ${OTHER_HOST}:${port}`]), { status: 400 });
    });
    await t.test('no Host header', async (t) => {
      await refused(t, req(['GET /probe HTTP/1.1']));
    });
  });

  await t.test('oversized headers', async (t) => {
    await accepted(t, req(['GET /probe HTTP/1.1', `Host: ${HOST}`, `X-Big: ${'a'.repeat(30 * 1024)}`]));
    await refused(t, req(['GET /probe HTTP/1.1', `Host: ${HOST}`, `X-Big: ${'a'.repeat(33 * 1024)}`]), { status: 431 });
    const many = Array.from({ length: 40 }, (_, i) => `X-Part-${i}: ${'b'.repeat(1000)}`);
    await refused(t, req(['GET /probe HTTP/1.1', `Host: ${HOST}`, ...many]), { status: 431 });
  });

  await t.test('too many headers', async (t) => {
    const fields = (n: number) => Array.from({ length: n }, (_, i) => `X-H${i}: v`);
    await accepted(t, req(['GET /probe HTTP/1.1', `Host: ${HOST}`, ...fields(90)]));
    await t.test('150 fields (over the default maxHeaders of 100)', async (t) => {
      await refused(t, req(['GET /probe HTTP/1.1', `Host: ${HOST}`, ...fields(150)]), { status: 431 });
    });
    await t.test("2100 fields (over Node's maxHeadersCount of 2000)", async (t) => {
      await refused(t, req(['GET /probe HTTP/1.1', `Host: ${HOST}`, ...fields(2100)]), { status: 431 });
    });
  });

  await t.test("slowloris: one header byte every 500 ms (today's defaults)", async (t) => {
    const r = await slow;
    t.comment(
      `closed after ${Math.round(r.closedAfterMs ?? -1)} ms, ${r.bytesSent} bytes sent, answer ${JSON.stringify(r.statusLine)}`,
    );
    t.ok(r.closedAfterMs !== undefined, 'the relay closed the connection');
    // headersTimeout 10 s by default, checked every second.
    t.ok(
      r.closedAfterMs !== undefined && r.closedAfterMs < 12_500,
      'within headersTimeout (10 s) + one connectionsCheckingInterval (1 s)',
    );
    t.ok(r.closedAfterMs !== undefined && r.closedAfterMs >= 9_500, 'not before the 10 s headers timeout');
    t.ok(
      r.status === undefined || (r.status >= 400 && r.status < 500),
      `answered with a 4xx or nothing (${r.statusLine})`,
    );
    t.equal(r.status, 408, 'answered 408');
    t.notOk(
      backend.seen.some((s) => s.headers['x-slow'] !== undefined),
      'the backend never saw it',
    );
  });
});

interface Slow {
  closedAfterMs: number | undefined;
  bytesSent: number;
  status: number | undefined;
  statusLine: string;
}

/** Writes `text` one byte per `intervalMs` once TLS is up; resolves when the relay closes (or after maxMs). */
function slowloris(s: TLSSocket, text: string, intervalMs: number, maxMs: number): Promise<Slow> {
  return new Promise((resolve) => {
    let started = 0;
    let sent = 0;
    let received = '';
    let timer: NodeJS.Timeout | undefined;
    const finish = (closed: boolean) => {
      clearInterval(timer);
      clearTimeout(cap);
      s.destroy();
      const statusLine = received.split('\r\n')[0] ?? '';
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
      resolve({
        closedAfterMs: closed && started ? performance.now() - started : undefined,
        bytesSent: sent,
        status: m ? Number(m[1]) : undefined,
        statusLine,
      });
    };
    const cap = setTimeout(() => finish(false), maxMs);
    s.once('secureConnect', () => {
      started = performance.now();
      timer = setInterval(() => {
        if (sent < text.length && s.writable) s.write(text[sent++]!);
      }, intervalMs);
    });
    s.on('data', (d: Buffer) => (received += d.toString('latin1')));
    s.once('close', () => finish(true));
  });
}

t.test('slowloris with limits.headersTimeout: 2s', async (t) => {
  const limits = 'limits: { headersTimeout: 2s }\n';
  const backend = await startBackend();
  t.teardown(() => backend.close());
  const h = await startHarness(t, {
    yaml: () =>
      `${limits}apps:\n  - name: main\n    externalUrl: "https://${APP_HOST}/"\n    internalUrl: "${backend.origin}/main/"\n    preauth: passthrough\n`,
  });
  await h.addConnector();
  const s = tlsConnect({
    host: '127.0.0.1',
    port: h.publicPort,
    servername: APP_HOST,
    ca: h.relay.ca.certPem,
    ALPNProtocols: ['http/1.1'],
  });
  s.on('error', () => undefined);
  t.teardown(() => s.destroy());
  const r = await slowloris(
    s,
    `GET /probe HTTP/1.1\r\nHost: ${APP_HOST}:${h.publicPort}\r\nX-Slow: ${'a'.repeat(100)}`,
    500,
    10_000,
  );
  t.comment(`closed after ${Math.round(r.closedAfterMs ?? -1)} ms, answer ${JSON.stringify(r.statusLine)}`);
  t.ok(r.closedAfterMs !== undefined && r.closedAfterMs < 3500, 'closed within headersTimeout + 1.5 s');
  t.equal(r.status, 408, 'answered 408 Request Timeout');
  t.equal(backend.seen.length, 0, 'the backend never saw it');
});
