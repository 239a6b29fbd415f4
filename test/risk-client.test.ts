// The client of a sign-in attempt: browser and OS from the user agent, and
// browser / script / bearer from what the request carried; hostile user agents
// are cut and cleaned, never a crash.
import t from 'tap';
import {
  clientKey,
  clientOf,
  cleanUserAgent,
  parsedUserAgents,
  MAX_USER_AGENT,
  type HeaderBag,
} from '../src/risk/client.js';

const CHROME_WIN =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';
const SAFARI_IOS =
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1';
const FIREFOX_LINUX = 'Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0';
const NAVIGATION: HeaderBag = {
  'sec-fetch-mode': 'navigate',
  'sec-fetch-dest': 'document',
  accept: 'text/html,application/xhtml+xml',
};

t.test('user agents and headers to browser, OS and client type', async (t) => {
  const table: [string, string | undefined, HeaderBag, boolean, [string | null, string | null, string]][] = [
    ['Chrome navigating', CHROME_WIN, NAVIGATION, false, ['Chrome 126', 'Windows', 'browser']],
    ['Safari on iOS', SAFARI_IOS, { accept: 'text/html' }, false, ['Safari 17', 'iOS', 'browser']],
    [
      'Firefox, fetch metadata only',
      FIREFOX_LINUX,
      { 'sec-fetch-mode': 'cors' },
      false,
      ['Firefox 127', 'Linux', 'browser'],
    ],
    ['a browser UA without browser headers', CHROME_WIN, { accept: '*/*' }, false, ['Chrome 126', 'Windows', 'script']],
    ['curl', 'curl/8.5.0', { accept: '*/*' }, false, [null, null, 'script']],
    ['curl asking for HTML', 'curl/8.5.0', { accept: 'text/html' }, false, [null, null, 'script']],
    ['python', 'python-requests/2.31.0', {}, false, [null, null, 'script']],
    [
      'a crawler',
      'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)',
      NAVIGATION,
      false,
      [null, null, 'script'],
    ],
    ['no user agent', undefined, NAVIGATION, false, [null, null, 'script']],
    ['a bearer token from a browser', CHROME_WIN, NAVIGATION, true, ['Chrome 126', 'Windows', 'bearer']],
    ['a bearer token from a script', 'okhttp/4.12.0', {}, true, [null, null, 'bearer']],
  ];
  for (const [name, ua, headers, bearer, [browser, os, clientType]] of table) {
    const got = clientOf({ userAgent: ua, headers, bearer });
    t.same([got.browser, got.os, got.clientType], [browser, os, clientType], name);
    t.equal(got.userAgent, ua ?? null, `${name}: user agent kept`);
  }
  const fromHeaders = clientOf({ headers: { 'user-agent': FIREFOX_LINUX, ...NAVIGATION } });
  t.same([fromHeaders.browser, fromHeaders.clientType], ['Firefox 127', 'browser'], 'the UA read from the headers');
  t.equal(clientOf({ headers: { 'user-agent': [CHROME_WIN], accept: ['text/html'] } }).clientType, 'browser');
});

t.test('hostile user agents are cut and cleaned', async (t) => {
  const huge = `${CHROME_WIN} ${'A'.repeat(1_000_000)}`;
  const began = performance.now();
  const got = clientOf({ userAgent: huge, headers: NAVIGATION });
  t.ok(performance.now() - began < 500, 'a megabyte UA is not parsed in full');
  t.equal(got.userAgent?.length, MAX_USER_AGENT);
  t.equal(got.browser, 'Chrome 126', 'the head still parses');

  const table: [string, string | null][] = [
    ['Mozilla/5.0\r\nX-Injected: yes', 'Mozilla/5.0?X-Injected: yes'],
    ['\u0000\u0001\u0002', '?'],
    ['Ünïcødé Browser/1.0 \u202e', '?n?c?d? Browser/1.0 ?'],
    ['   ', null],
    ['', null],
    ['\ud800 lone surrogate', '? lone surrogate'],
  ];
  for (const [ua, want] of table) {
    t.equal(cleanUserAgent(ua), want, JSON.stringify(ua));
    t.doesNotThrow(() => clientOf({ userAgent: ua }));
  }
  t.equal(cleanUserAgent(undefined), null);
  const longVersion = clientOf({ userAgent: `Chrome/${'9'.repeat(400)}`, headers: NAVIGATION }).browser;
  t.ok((longVersion?.length ?? 0) < 60, `a long version is cut: ${longVersion}`);
  // Many distinct user agents: the parse cache stays bounded.
  for (let i = 0; i < 3000; i++) clientOf({ userAgent: `${FIREFOX_LINUX} n${i}` });
  t.equal(parsedUserAgents(), 1000, 'the cache holds at most 1000');
  t.equal(clientOf({ userAgent: FIREFOX_LINUX }).browser, 'Firefox 127');
  t.equal(clientOf({ headers: { accept: 'x'.repeat(100_000) } }).clientType, 'script');
});

t.test('client keys leave versions out', async (t) => {
  t.equal(clientKey('Chrome 126', 'Windows'), 'Chrome/Windows');
  t.equal(clientKey('Chrome 127', 'Windows'), 'Chrome/Windows');
  t.equal(clientKey('Microsoft Edge 125', 'macOS'), 'Microsoft Edge/macOS');
  t.equal(clientKey(null, 'Linux'), '?/Linux');
  t.equal(clientKey(null, null), null);
});
