// Link translation in response bodies: HTML and CSS are streamed through a
// rewriter that turns absolute (and scheme-relative) URLs of published apps'
// internal URLs into their external URLs; relative URLs and everything else
// pass byte for byte.
//
// HTML is tokenised by parse5 (parse5-html-rewriting-stream); tokens nobody
// changes are copied from the source text, and in a changed attribute only the
// URL's leading part (scheme, host, internal path prefix) is replaced. Rewritten:
// href, src, action, formaction, poster, cite, background, manifest, xlink:href,
// data (on <object>), srcset and imagesrcset (every candidate), <meta
// http-equiv=refresh content>, style attributes and <style> contents (CSS), and
// the markup inside <noscript> (for browsers without scripts). CSS: url(…),
// quoted or not, and @import "…". Bodies are handled as bytes (latin1 strings
// internally), so UTF-8 and every ASCII-compatible charset round-trip exactly.
//
// What cannot be translated:
// - URLs built by scripts at run time, and URLs inside JavaScript (inline
//   <script>, event handler attributes, .js files): strings in code are not parsed;
// - JSON, XML other than XHTML, and every other body type (only text/html,
//   application/xhtml+xml and text/css are rewritten);
// - bodies in charsets that are not ASCII-compatible (UTF-16, ISO-2022-JP,
//   Shift_JIS…, or a UTF-16 byte order mark): passed through unchanged;
// - relative URLs: left as they are (they resolve against the external URL),
//   so root-relative paths of an app whose internal and external path prefixes
//   differ (/base/x inside, /wiki/ outside) are not remapped;
// - URLs in other attributes (meta og:url content, ping, iframe srcdoc…), CSS
//   image-set("…") strings, and a url(…) longer than MAX_HELD split across chunks;
// - an attribute whose URL scheme or host is written with character references
//   (http&#58;//…) and that also holds a named reference other than &quot; &apos;
//   &amp; &lt; &gt; and non-ASCII text;
// - apps published on a wildcard host (no single host to translate to).
// Memory: no body is held whole. CSS holds back at most MAX_HELD characters of an
// unfinished url(…)/@import; HTML holds what parse5 holds (its 64 KiB buffer plus
// the token being read, e.g. one very long attribute value or comment).
import { Duplex, PassThrough, Transform, pipeline, type Readable, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import { RewritingStream } from 'parse5-html-rewriting-stream';
import { applyEdits, findUrlEdit, refreshEdits, srcsetEdits, urlEdits, type UrlEdit, type UrlMap } from './urls.js';

/** The longest unfinished CSS url(…) or @import held back waiting for more text. */
export const MAX_HELD = 64 * 1024;

export type LinkKind = 'html' | 'css';

/** 'html' or 'css' when a body of this Content-Type carries links that are translated. */
export function needsLinkTranslation(contentType: string | undefined): LinkKind | undefined {
  if (!contentType) return undefined;
  const type = contentType.split(';')[0]!.trim().toLowerCase();
  if (type === 'text/html' || type === 'application/xhtml+xml') return 'html';
  if (type === 'text/css') return 'css';
  return undefined;
}

/** The charset parameter of a Content-Type, lower-cased (undefined if none). */
export function contentTypeCharset(contentType: string | undefined): string | undefined {
  const m = /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i.exec(contentType ?? '');
  const v = (m?.[1] ?? m?.[2])?.trim().toLowerCase();
  return v || undefined;
}

const ASCII_COMPATIBLE = new RegExp(
  '^(?:utf-?8|unicode-1-1-utf-8|unicode11utf8|unicode20utf8|x-unicode20utf8|us-ascii|ascii|ansi_x3\\.4-1968|' +
    'iso-?8859-\\d{1,2}|iso_8859-\\d{1,2}(?::\\d{4})?|latin-?\\d{1,2}|l\\d{1,2}|cp819|ibm819|csisolatin\\d|' +
    'windows-125\\d|x-cp125\\d|cp125\\d|windows-874|koi8-?[ru]?|koi8-ru|macintosh|mac|x-mac-roman)$',
);

/** Whether a body in this charset is rewritten (UTF-8 and ASCII-compatible charsets; undefined = not declared). */
export function isRewritableCharset(charset: string | undefined): boolean {
  if (charset === undefined) return true;
  return ASCII_COMPATIBLE.test(
    charset
      .trim()
      .replace(/^["']|["']$/g, '')
      .toLowerCase(),
  );
}

// ---------------------------------------------------------------------------
// CSS

/** Characters that may not appear raw in a CSS url(…) or string: percent-encoded in generated text. */
const cssEscape = (s: string): string =>
  s.replace(/["'()\\\s]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);

// A complete url(…) (double-quoted, single-quoted or bare) or @import "…"/'…'.
// Not after a name character: myurl( is another function.
const CSS_FULL = new RegExp(
  String.raw`(?<![\w\-\\\u0080-\uffff])(url\(\s*)(?:"((?:[^"\\\n\r\f]|\\[^])*)"|'((?:[^'\\\n\r\f]|\\[^])*)'|((?:[^"'()\s\\]|\\[^])*))(\s*\))` +
    String.raw`|(@import\s*)(?:"((?:[^"\\\n\r\f]|\\[^])*)"|'((?:[^'\\\n\r\f]|\\[^])*)')`,
  'gi',
);
// The start of one that more text could still complete: anchored at the end of the text.
const CSS_PARTIAL = new RegExp(
  String.raw`(?<![\w\-\\\u0080-\uffff])u(?:r(?:l(?:\(\s*(?:"(?:[^"\\\n\r\f]|\\[^])*(?:\\|"\s*)?|'(?:[^'\\\n\r\f]|\\[^])*(?:\\|'\s*)?|(?:[^"'()\s\\]|\\[^])*(?:\\|\s*)))?)?)?$` +
    String.raw`|@(?:i(?:m(?:p(?:o(?:r(?:t\s*(?:"(?:[^"\\\n\r\f]|\\[^])*\\?|'(?:[^'\\\n\r\f]|\\[^])*\\?)?)?)?)?)?)?)?$`,
  'gi',
);

/** The edit for one CSS_FULL match, in coordinates of the scanned text. */
function cssMatchEdit(m: RegExpExecArray, maps: readonly UrlMap[]): UrlEdit | undefined {
  let offset: number;
  let content: string;
  if (m[1] !== undefined) {
    const quoted = m[2] ?? m[3];
    content = quoted ?? m[4] ?? '';
    offset = m.index + m[1].length + (quoted !== undefined ? 1 : 0);
  } else {
    content = m[7] ?? m[8] ?? '';
    offset = m.index + m[6]!.length + 1;
  }
  const e = findUrlEdit(content, maps);
  return e && { ...e, start: e.start + offset, end: e.end + offset };
}

/** Every url(…)/@import edit of a complete CSS text (a style attribute). */
export function cssEdits(text: string, maps: readonly UrlMap[]): UrlEdit[] {
  const out: UrlEdit[] = [];
  CSS_FULL.lastIndex = 0;
  for (let m = CSS_FULL.exec(text); m; m = CSS_FULL.exec(text)) {
    const e = cssMatchEdit(m, maps);
    if (e) out.push(e);
    if (m[0].length === 0) CSS_FULL.lastIndex++;
  }
  return out;
}

function partialFrom(s: string, from: number): number {
  CSS_PARTIAL.lastIndex = from;
  const m = CSS_PARTIAL.exec(s);
  return m ? m.index : -1;
}

interface Engine {
  /** Text in, translated text out (possibly holding some back). */
  write(text: string): string;
  /** The rest, at the end of the body. */
  end(): string;
}

/** Streaming CSS: the text is final up to the first url(…)/@import that more text could still complete. */
class CssEngine implements Engine {
  /** The last character already emitted: context for the look-behind. */
  private prev = '';
  private pending = '';

  constructor(private readonly maps: readonly UrlMap[]) {}

  write(text: string): string {
    this.pending += text;
    return this.run(false);
  }

  end(): string {
    return this.run(true);
  }

  private run(final: boolean): string {
    const s = this.prev + this.pending;
    let pos = this.prev.length;
    let out = '';
    // Partial starts before skip were given up on (held back too long).
    let skip = pos;
    for (;;) {
      let partial = final ? -1 : partialFrom(s, Math.max(pos, skip));
      for (;;) {
        CSS_FULL.lastIndex = pos;
        const m = CSS_FULL.exec(s);
        if (!m || (partial >= 0 && m.index >= partial)) break;
        const e = cssMatchEdit(m, this.maps);
        const end = m.index + m[0].length;
        out += s.slice(pos, m.index) + (e ? s.slice(m.index, e.start) + cssEscape(e.text) + s.slice(e.end, end) : m[0]);
        pos = end;
        // A "partial" inside a complete match is no start at all: look again after it.
        if (partial >= 0 && partial < pos) partial = partialFrom(s, Math.max(pos, skip));
      }
      const cut = partial >= 0 ? partial : s.length;
      out += s.slice(pos, cut);
      pos = cut;
      if (s.length - cut <= MAX_HELD) break;
      // Too long to be a URL worth holding: that start is given up and scanning goes on after it.
      skip = cut + 1;
    }
    if (pos > 0) this.prev = s[pos - 1]!;
    this.pending = s.slice(pos);
    return out;
  }
}

// ---------------------------------------------------------------------------
// HTML

type ValueEdits = (value: string, maps: readonly UrlMap[]) => UrlEdit[];

const URL_ATTRS = new Set([
  'href',
  'src',
  'action',
  'formaction',
  'poster',
  'cite',
  'background',
  'manifest',
  'xlink:href',
]);
const SRCSET_ATTRS = new Set(['srcset', 'imagesrcset']);

interface Attr {
  name: string;
  value: string;
  prefix?: string;
}
interface Location {
  startOffset: number;
  endOffset: number;
}
interface Located {
  sourceCodeLocation?: Location | null;
}
interface StartTag {
  tagName: string;
  attrs: Attr[];
  selfClosing: boolean;
  sourceCodeLocation?: (Location & { attrs?: Record<string, Location> }) | null;
}

function editsForAttr(tag: StartTag, key: string): ValueEdits | undefined {
  if (URL_ATTRS.has(key)) return urlEdits;
  if (SRCSET_ATTRS.has(key)) return srcsetEdits;
  if (key === 'style') return cssEdits;
  if (key === 'data' && tag.tagName === 'object') return urlEdits;
  if (
    key === 'content' &&
    tag.tagName === 'meta' &&
    tag.attrs.some((a) => a.name === 'http-equiv' && a.value.trim().toLowerCase() === 'refresh')
  ) {
    return refreshEdits;
  }
  return undefined;
}

const isAscii = (s: string): boolean => !/[\u0080-\uffff]/.test(s);

function attrEscape(quote: string): (s: string) => string {
  return (s) => {
    const amp = s.replace(/&/g, '&amp;');
    return quote === "'" ? amp.replace(/'/g, '&#39;') : amp.replace(/"/g, '&quot;');
  };
}

const SIMPLE_REFS: Record<string, string> = { quot: '"', apos: "'", amp: '&', lt: '<', gt: '>' };

/**
 * The source text of an attribute value decoded as far as &quot; &apos; &amp; &lt; &gt; and
 * numeric references (with their semicolons) go, any other "&" taken as written; with, for
 * each decoded character, where it starts in the source. Only used when the result is exactly
 * the value the HTML parser decoded. Undefined for numeric references to odd code points.
 */
function decodeSimple(raw: string): { text: string; at: number[] } | undefined {
  let text = '';
  const at: number[] = [];
  for (let i = 0; i < raw.length;) {
    if (raw[i] !== '&') {
      text += raw[i];
      at.push(i);
      i++;
      continue;
    }
    const m = /^&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|([a-z]+));/.exec(raw.slice(i, i + 12));
    let decoded: string;
    if (!m || (m[3] !== undefined && !Object.hasOwn(SIMPLE_REFS, m[3]))) {
      // Taken as a plain "&": if the HTML parser read a reference here, the decoded texts differ.
      text += '&';
      at.push(i);
      i++;
      continue;
    }
    if (m[3] !== undefined) {
      decoded = SIMPLE_REFS[m[3]]!;
    } else {
      const cp = m[1] !== undefined ? Number(m[1]) : parseInt(m[2]!, 16);
      // Only code points that decode to themselves (not NUL, C1 controls, surrogates, out of range).
      if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || (cp >= 0xd800 && cp < 0xe000) || cp > 0x10ffff) return undefined;
      decoded = String.fromCodePoint(cp);
    }
    text += decoded;
    for (let k = 0; k < decoded.length; k++) at.push(i);
    i += m[0].length;
  }
  at.push(raw.length);
  return { text, at };
}

/**
 * The new source text of one attribute, or undefined to keep it. The edits are found in the
 * decoded value and mapped back onto the source text, so only the replaced part changes
 * and everything else stays as written (character references and charset included).
 */
function rewriteAttr(rawAttr: string, decoded: string, edits: ValueEdits, maps: readonly UrlMap[]): string | undefined {
  const wanted = edits(decoded, maps);
  if (wanted.length === 0) return undefined;
  const m = /^([^=]*=[\t\n\f\r ]*)(["']?)([^]*)$/.exec(rawAttr);
  if (!m) return undefined;
  const [, head = '', quote = ''] = m;
  let rawValue = m[3] ?? '';
  if (quote) {
    if (!rawValue.endsWith(quote)) return undefined;
    rawValue = rawValue.slice(0, -1);
  }
  const escape = attrEscape(quote || '"');
  let value: string | undefined;
  const simple = rawValue.includes('&') ? decodeSimple(rawValue) : undefined;
  if (!simple && rawValue === decoded) {
    // Nothing encoded: the source is the value.
    value = applyEdits(rawValue, wanted, escape);
  } else if (simple?.text === decoded) {
    // Character references the decoder knows: every decoded offset has its place in the source.
    value = applyEdits(
      rawValue,
      wanted.map((e) => ({ ...e, start: simple.at[e.start]!, end: simple.at[e.end]! })),
      escape,
    );
  } else {
    // Other references: the source itself, when its edits are the same (none in the replaced parts).
    const found = edits(rawValue, maps);
    const same =
      found.length === wanted.length &&
      found.every((e, i) => e.original === wanted[i]!.original && e.text === wanted[i]!.text);
    if (same) value = applyEdits(rawValue, found, escape);
    else if (isAscii(decoded)) value = escape(applyEdits(decoded, wanted));
  }
  if (value === undefined) return undefined;
  if (quote) return `${head}${quote}${value}${quote}`;
  // Unquoted values stay unquoted when they can.
  return /^[^\t\n\f\r "'=<>`]+$/.test(value) ? `${head}${value}` : `${head}"${value.replace(/"/g, '&quot;')}"`;
}

/** The tag's source text with its URL attributes translated. */
function rewriteStartTag(tag: StartTag, raw: string, maps: readonly UrlMap[]): string {
  const loc = tag.sourceCodeLocation;
  if (!loc?.attrs || tag.attrs.length === 0) return raw;
  const changes: { start: number; end: number; text: string }[] = [];
  for (const attr of tag.attrs) {
    const key = attr.prefix ? `${attr.prefix}:${attr.name}` : attr.name;
    const edits = editsForAttr(tag, key);
    if (!edits) continue;
    const at = loc.attrs[key] ?? loc.attrs[key.toLowerCase()];
    if (!at) continue;
    const start = at.startOffset - loc.startOffset;
    const end = at.endOffset - loc.startOffset;
    if (start < 0 || end > raw.length || start >= end) continue;
    const text = rewriteAttr(raw.slice(start, end), attr.value, edits, maps);
    if (text !== undefined) changes.push({ start, end, text });
  }
  if (changes.length === 0) return raw;
  changes.sort((a, b) => a.start - b.start);
  let out = '';
  let pos = 0;
  for (const c of changes) {
    if (c.start < pos) continue;
    out += raw.slice(pos, c.start) + c.text;
    pos = c.end;
  }
  return out + raw.slice(pos);
}

/** Streaming HTML on parse5's rewriting stream, driven synchronously: tokens in, source text out. */
class HtmlEngine implements Engine {
  private readonly rw = new RewritingStream();
  private out = '';
  /** Input (offset) the tokens have accounted for so far, and what is held after it (an unfinished token). */
  private consumed = 0;
  private heldStart = 0;
  private held = '';
  /** Inside <style>: its text is CSS. */
  private css: CssEngine | undefined;
  /** Inside <noscript>: its text is markup for browsers without scripts. */
  private inner: HtmlEngine | undefined;

  constructor(
    private readonly maps: readonly UrlMap[],
    private readonly nested = false,
  ) {
    this.rw.on('startTag', (tag: StartTag, raw: string) => {
      this.account(tag, raw);
      this.closeRawText();
      this.out += rewriteStartTag(tag, raw, this.maps);
      if (tag.selfClosing) return;
      if (tag.tagName === 'style') this.css = new CssEngine(this.maps);
      else if (tag.tagName === 'noscript' && !this.nested) this.inner = new HtmlEngine(this.maps, true);
    });
    this.rw.on('text', (text: Located, raw: string) => {
      this.account(text, raw);
      if (this.css) this.out += this.css.write(raw);
      else if (this.inner) this.out += this.inner.write(raw);
      else this.out += raw;
    });
    for (const event of ['endTag', 'comment', 'doctype']) {
      this.rw.on(event, (token: Located, raw: string) => {
        this.account(token, raw);
        this.closeRawText();
        this.out += raw;
      });
    }
  }

  /** Moves past a token's source text, first copying any input the tokenizer skipped (an empty end tag "</>"). */
  private account(token: Located, raw: string): void {
    const loc = token.sourceCodeLocation;
    const start = loc ? loc.startOffset : this.consumed;
    if (start > this.consumed) {
      this.closeRawText();
      this.out += this.held.slice(this.consumed - this.heldStart, start - this.heldStart);
    }
    this.consumed = loc ? loc.endOffset : start + raw.length;
  }

  /** The element whose text was CSS or markup ended (or never was raw text: foreign content). */
  private closeRawText(): void {
    if (this.css) this.out += this.css.end();
    if (this.inner) this.out += this.inner.end();
    this.css = undefined;
    this.inner = undefined;
  }

  private take(): string {
    const out = this.out;
    this.out = '';
    return out;
  }

  write(text: string): string {
    if (text.length === 0) return '';
    this.held += text;
    this.rw._transformChunk(text);
    this.held = this.held.slice(this.consumed - this.heldStart);
    this.heldStart = this.consumed;
    return this.take();
  }

  end(): string {
    this.rw._final(() => undefined);
    this.closeRawText();
    // An unfinished tag or similar at the very end is dropped by the tokenizer: keep it as it was.
    this.out += this.held.slice(this.consumed - this.heldStart);
    this.held = '';
    return this.take();
  }
}

// ---------------------------------------------------------------------------
// Streams

/** Bytes in, bytes out: decoded as latin1 so every byte survives, whatever the charset. */
class LinkTransform extends Transform {
  private engine: Engine | undefined;
  private passThrough = false;
  private head: Buffer | undefined;

  constructor(private readonly make: () => Engine) {
    super();
  }

  private start(first: Buffer): void {
    // A UTF-16 (or UTF-32) byte order mark: not ASCII-compatible, left alone.
    this.passThrough =
      first.length >= 2 && ((first[0] === 0xff && first[1] === 0xfe) || (first[0] === 0xfe && first[1] === 0xff));
    if (!this.passThrough) this.engine = this.make();
  }

  private feed(bytes: Buffer): void {
    if (this.passThrough) {
      this.push(bytes);
      return;
    }
    const out = this.engine!.write(bytes.toString('latin1'));
    if (out) this.push(Buffer.from(out, 'latin1'));
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      if (!this.engine && !this.passThrough) {
        this.head = this.head ? Buffer.concat([this.head, chunk]) : chunk;
        if (this.head.length < 2) return callback();
        this.start(this.head);
        chunk = this.head;
        this.head = undefined;
      }
      this.feed(chunk);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      if (this.head) {
        this.start(this.head);
        this.feed(this.head);
      }
      if (this.engine) {
        const out = this.engine.end();
        if (out) this.push(Buffer.from(out, 'latin1'));
      }
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }
}

/**
 * A transform translating links in an HTML or CSS body (identity-encoded bytes in, bytes
 * out). Bodies whose declared charset is not ASCII-compatible pass through unchanged.
 * Of maps with the same internal URL the first given wins: put the responding app first.
 */
export function createLinkTranslator(kind: LinkKind, maps: readonly UrlMap[], opts?: { charset?: string }): Transform {
  if (!isRewritableCharset(opts?.charset)) return new PassThrough();
  return new LinkTransform(() => (kind === 'html' ? new HtmlEngine(maps) : new CssEngine(maps)));
}

/** Decoder, translator and encoder as one stream: bytes written go to the first, bytes read come from the last. */
class Chain extends Duplex {
  private parts: (Duplex | Transform)[] | undefined;
  private first: Buffer | undefined;

  constructor(
    private readonly build: (first: Buffer) => (Duplex | Transform)[],
    private readonly sniff: number,
  ) {
    super();
  }

  private start(first: Buffer): void {
    const parts = this.build(first);
    this.parts = parts;
    const tail = parts[parts.length - 1] as Readable;
    pipeline(parts, (err) => {
      if (err) this.destroy(err);
    });
    tail.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) tail.pause();
    });
    tail.on('end', () => this.push(null));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (!this.parts) {
      this.first = this.first ? Buffer.concat([this.first, chunk]) : chunk;
      if (this.first.length < this.sniff) return callback();
      chunk = this.first;
      this.first = undefined;
      this.start(chunk);
    }
    if (this.parts![0]!.write(chunk)) callback();
    else this.parts![0]!.once('drain', () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.parts && this.first) {
      const first = this.first;
      this.first = undefined;
      this.start(first);
      this.parts![0]!.write(first);
    }
    if (this.parts) this.parts[0]!.end();
    else this.push(null); // no body at all
    callback();
  }

  override _read(): void {
    (this.parts?.[this.parts.length - 1] as Readable | undefined)?.resume();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    for (const p of this.parts ?? []) p.destroy();
    callback(err);
  }
}

const BROTLI_OPTIONS: zlib.BrotliOptions = {
  params: {
    [zlib.constants.BROTLI_PARAM_QUALITY]: 5,
    [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT,
  },
};

/** Whether a deflate body starts with a zlib header (RFC 1950) rather than raw deflate data. */
function isZlibWrapped(b: Buffer): boolean {
  if (b.length < 2) return true;
  return (b[0]! & 0x0f) === 8 && b[0]! >> 4 <= 7 && ((b[0]! << 8) | b[1]!) % 31 === 0;
}

/**
 * A stream translating links in a body with this Content-Encoding: decoded (gzip, x-gzip,
 * deflate, br), translated, encoded again the same way; encodingHeader is the
 * Content-Encoding to send (undefined: none). Undefined for encodings it cannot decode
 * (or stacked ones) and for charsets it does not rewrite: pass such bodies through as they are.
 */
export function createBodyTranslator(
  contentEncoding: string | undefined,
  kind: LinkKind,
  maps: readonly UrlMap[],
  opts?: { charset?: string },
): { stream: Duplex; encodingHeader: string | undefined } | undefined {
  if (!isRewritableCharset(opts?.charset)) return undefined;
  const header = (contentEncoding ?? '').trim();
  const translator = () => createLinkTranslator(kind, maps, opts);
  switch (header.toLowerCase()) {
    case '':
    case 'identity':
      return { stream: translator(), encodingHeader: undefined };
    case 'gzip':
    case 'x-gzip':
      return {
        stream: new Chain(() => [zlib.createGunzip(), translator(), zlib.createGzip()], 1),
        encodingHeader: header,
      };
    case 'deflate':
      // Servers send zlib-wrapped and raw deflate alike: sent back in the form received.
      return {
        stream: new Chain(
          (first) =>
            isZlibWrapped(first)
              ? [zlib.createInflate(), translator(), zlib.createDeflate()]
              : [zlib.createInflateRaw(), translator(), zlib.createDeflateRaw()],
          2,
        ),
        encodingHeader: header,
      };
    case 'br':
      return {
        stream: new Chain(
          () => [zlib.createBrotliDecompress(), translator(), zlib.createBrotliCompress(BROTLI_OPTIONS)],
          1,
        ),
        encodingHeader: header,
      };
    default:
      return undefined;
  }
}
