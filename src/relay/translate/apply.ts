// Where translation meets the response path: which URL maps apply (every
// published app, the responding one first), the translated header list, and
// the body stream to send — translated when the app asks for link translation
// and the body is HTML or CSS in an encoding we can handle.
import type { Duplex } from 'node:stream';
import type { AppConfig, RelayConfig } from '../../config/relay-config.js';
import type { HeaderPairs } from '../../protocol/connector-api.js';
import { translateResponseHeaders } from './headers.js';
import { isGrpcContentType } from '../../http/grpc-refusal.js';
import { contentTypeCharset, createBodyTranslator, needsLinkTranslation } from './links.js';
import type { UrlMap } from './urls.js';

const mapsCache = new WeakMap<RelayConfig, Map<string, UrlMap[]>>();

function mapsFor(config: RelayConfig, app: AppConfig): UrlMap[] {
  let byApp = mapsCache.get(config);
  if (!byApp) {
    byApp = new Map();
    mapsCache.set(config, byApp);
  }
  let maps = byApp.get(app.name);
  if (!maps) {
    const all = config.apps
      .filter((a) => !a.host.startsWith('*.'))
      .map((a) => ({ internal: a.internalUrl, external: a.externalUrl }));
    const own = { internal: app.internalUrl, external: app.externalUrl };
    maps = [own, ...all.filter((m) => m.external.href !== app.externalUrl.href)];
    byApp.set(app.name, maps);
  }
  return maps;
}

export interface TranslatedResponse {
  headers: HeaderPairs;
  /** A transform the body must go through, when links are translated. */
  body: Duplex | undefined;
}

export function translateResponse(
  config: RelayConfig,
  app: AppConfig,
  headers: HeaderPairs,
  method: string | undefined,
  status: number,
): TranslatedResponse {
  if (!app.translateHeaders && !app.translateLinks) return { headers, body: undefined };
  // gRPC answers pass untouched: their headers and trailers are the call's metadata.
  if (isGrpc(headers)) return { headers, body: undefined };
  const maps = mapsFor(config, app);
  let out = app.translateHeaders ? translateResponseHeaders(headers, maps[0]!, maps) : headers;
  if (!app.translateLinks || method === 'HEAD' || status === 204 || status === 304)
    return { headers: out, body: undefined };
  const get = (name: string) => out.find(([k]) => k.toLowerCase() === name)?.[1];
  const type = get('content-type');
  const kind = needsLinkTranslation(type);
  if (!kind) return { headers: out, body: undefined };
  const charset = contentTypeCharset(type);
  const translator = createBodyTranslator(get('content-encoding'), kind, maps, charset ? { charset } : {});
  if (!translator) return { headers: out, body: undefined };
  // The length changes with the links: drop it (the body goes out chunked).
  out = out.filter(([k]) => k.toLowerCase() !== 'content-length');
  return { headers: out, body: translator.stream };
}

/** application/grpc, +proto, +json…: one content-type header starting so. */
function isGrpc(headers: HeaderPairs): boolean {
  for (const [k, v] of headers) if (k.length === 12 && k.toLowerCase() === 'content-type') return isGrpcContentType(v);
  return false;
}
