// Which relay replicas the connector dials, and whom it asks for its config and
// certificate: the replica set the relay publishes, the registration URL standing
// in while that set is unknown, and the order of fall-backs when one does not answer.
import { isProxyctlError } from '../errors.js';
import type { ReplicaInfo } from '../protocol/connector-api.js';

/** A relay the connector keeps channels to: a replica, or the registration URL standing for one. */
export interface RelayTarget {
  /** Base URL of its connector API. */
  url: string;
  /** scheme://host:port: what the channels and data connections dial, and the key the connector keeps. */
  origin: string;
  /** The replica's id; undefined while the set is unknown. */
  replicaId: string | undefined;
}

export const originOf = (url: string): string => new URL(url).origin;

/**
 * The relays to keep channels to. A set not known (a relay from before replicas) or empty is
 * the registration URL. A set of one is the relay the registration URL reaches, as long as
 * that URL answers: a single relay keeps being dialled the way it was registered (through a
 * load balancer or a mapped port) whatever its own connectorApi.url says. Otherwise each
 * replica at its own URL: a load balancer in front of several would spread channels at random.
 */
export function relayTargets(
  set: readonly ReplicaInfo[] | undefined,
  registrationUrl: string,
  answeredAtRegistration: boolean,
): RelayTarget[] {
  const registration = (replicaId: string | undefined): RelayTarget => ({
    url: registrationUrl,
    origin: originOf(registrationUrl),
    replicaId,
  });
  if (!set || set.length === 0) return [registration(undefined)];
  if (set.length === 1 && answeredAtRegistration) return [registration(set[0]!.id)];
  return set.map((r) => ({ url: r.url, origin: originOf(r.url), replicaId: r.id }));
}

/**
 * Whom to ask for the config or a certificate, in turn: the registration URL, then the other
 * known replicas, those with an open channel first (they answered most recently).
 */
export function askOrder(
  registrationUrl: string,
  set: readonly ReplicaInfo[] | undefined,
  hasOpenChannel: (origin: string) => boolean,
): string[] {
  const first = originOf(registrationUrl);
  const others = (set ?? []).map((r) => r.url).filter((u) => originOf(u) !== first);
  const open = others.filter((u) => hasOpenChannel(originOf(u)));
  return [registrationUrl, ...open, ...others.filter((u) => !open.includes(u))];
}

/** Gateway answers: what a load balancer says when no replica behind it answers. */
const GATEWAY = new Set([502, 503, 504]);

/**
 * An error after which the next relay is worth asking: no answer at all, or a gateway's.
 * A replica other than the registration URL that fails TLS verification is skipped too
 * (one misconfigured replica must not stop the connector); at the registration URL that
 * stays the setup error it always was. Refusals that disown the connector are final.
 */
export function answersNot(err: unknown, atRegistration: boolean): boolean {
  if (!isProxyctlError(err)) return false;
  if (err.code === 'ERR_RELAY_UNREACHABLE') return true;
  if (err.code === 'ERR_RELAY_REFUSED') return GATEWAY.has(err.status);
  return (err.code === 'ERR_RELAY_UNTRUSTED' || err.code === 'ERR_PROTOCOL_VERSION') && !atRegistration;
}
