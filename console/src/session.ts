// Who is signed in and the API client, for every page; and the two ways a page
// talks to the API: useLoad (read, with reload) and useAction (a write in flight).
import { createContext } from 'preact';
import { useCallback, useContext, useEffect, useRef, useState } from 'preact/hooks';
import type { Caller, Page } from '../../src/admin/api-types.js';
import { ApiError, type Client } from './api.js';

export interface Session {
  api: Client;
  caller: Caller;
  /** Administrators write; readers see every write control hidden. */
  canWrite: boolean;
}

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error('useSession outside SessionContext');
  return session;
}

export function asApiError(err: unknown): ApiError {
  return err instanceof ApiError ? err : new ApiError(0, 'ERR_CONSOLE', (err as Error)?.message ?? String(err));
}

export interface Loaded<T> {
  data: T | undefined;
  error: ApiError | undefined;
  loading: boolean;
  reload: () => void;
  /** Replace the data in place (after a write answered with the new object). */
  set: (data: T) => void;
}

/** Runs load now and whenever a dep changes; a late answer to an older call is dropped. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: ApiError; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  const seq = useRef(0);
  useEffect(() => {
    const mine = ++seq.current;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => mine === seq.current && setState({ data, loading: false }),
      (err: unknown) => mine === seq.current && setState({ error: asApiError(err), loading: false }),
    );
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  const set = useCallback((data: T) => setState({ data, loading: false }), []);
  return { data: state.data, error: state.error, loading: state.loading, reload, set };
}

export interface Action {
  busy: boolean;
  error: ApiError | undefined;
  /** Runs fn unless one is in flight; resolves to its result, or undefined when it failed (error is set). */
  run: <R>(fn: () => Promise<R>) => Promise<R | undefined>;
  clear: () => void;
}

export function useAction(): Action {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const inFlight = useRef(false);
  const run = useCallback(async <R>(fn: () => Promise<R>): Promise<R | undefined> => {
    if (inFlight.current) return undefined;
    inFlight.current = true;
    setBusy(true);
    setError(undefined);
    try {
      return await fn();
    } catch (err) {
      setError(asApiError(err));
      return undefined;
    } finally {
      inFlight.current = false;
      setBusy(false);
    }
  }, []);
  const clear = useCallback(() => setError(undefined), []);
  return { busy, error, run, clear };
}

export interface Paged<T> {
  rows: T[];
  next: string | null;
  loading: boolean;
  error: ApiError | undefined;
  /** Appends the next (older) page. */
  more: () => void;
  moreBusy: boolean;
  reload: () => void;
}

/** A cursor-paged log: the first page on every dep change, older pages appended on demand. */
export function usePaged<T>(load: (cursor?: string) => Promise<Page<T>>, deps: unknown[]): Paged<T> {
  const first = useLoad(() => load(), deps);
  const [rows, setRows] = useState<T[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const action = useAction();
  useEffect(() => {
    setRows(first.data?.items ?? []);
    setNext(first.data?.next ?? null);
  }, [first.data]);
  const more = () => {
    if (!next) return;
    void action
      .run(() => load(next))
      .then((page) => {
        if (!page) return;
        setRows((r) => [...r, ...page.items]);
        setNext(page.next);
      });
  };
  return {
    rows,
    next,
    loading: first.loading,
    error: first.error ?? action.error,
    more,
    moreBusy: action.busy,
    reload: first.reload,
  };
}
