// Header lists in the shapes Node hands them and takes them: flat [name, value, …]
// (rawHeaders, rawTrailers), [name, value] pairs (the relay↔connector contract), and
// objects where a repeated name holds a list in order (node:http2, addTrailers).
/** Flat [name, value, …] as [name, value] pairs, in order (protocol's HeaderPairs). */
export function pairsOf(flat: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}

/** Adds one field to a header object: a name seen before becomes a list, values in order. */
export function addField(
  out: Record<string, number | string | string[] | undefined>,
  name: string,
  value: string,
): void {
  const prev = out[name];
  if (prev === undefined) out[name] = value;
  else if (Array.isArray(prev)) prev.push(value);
  else out[name] = [String(prev), value];
}
