// WebSocket message bodies as text. ws hands a message over as a Buffer (the
// default binary type), an ArrayBuffer or a list of fragments; both channel ends
// read their text messages through this one function.
import type { RawData } from 'ws';

export function frameText(data: RawData): string {
  return frameBytes(data).toString('utf8');
}

export function frameBytes(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
