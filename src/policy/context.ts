// Turning a request into a sign-in context: client platform from the user
// agent, country from GeoIP (the geoip-country package, which ships its data;
// it is updated by upgrading the package, whose version carries the database
// date, or in place with its `updatedb` script and a MaxMind licence key).
import { createRequire } from 'node:module';
import type { Platform } from './model.js';
import { canonicalAddress } from '../net/address.js';

const require = createRequire(import.meta.url);
let geo: { lookup(ip: string): { country: string } | null } | undefined;

export function countryOf(ip: string): string | undefined {
  try {
    geo ??= require('geoip-country') as { lookup(ip: string): { country: string } | null };
    return geo.lookup(canonicalAddress(ip))?.country ?? undefined;
  } catch {
    return undefined;
  }
}

export function platformOf(userAgent: string | undefined): Platform {
  const ua = userAgent ?? '';
  if (/iPhone|iPad|iPod/i.test(ua)) return 'ios';
  if (/Android/i.test(ua)) return 'android';
  if (/Windows NT|Win64|Windows/i.test(ua)) return 'windows';
  if (/Macintosh|Mac OS X/i.test(ua)) return 'macos';
  if (/Linux|X11|CrOS/i.test(ua)) return 'linux';
  return 'other';
}
