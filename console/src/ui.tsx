// Shared pieces of every page: labelled form fields that show their own issues,
// the issue summary, scrollable tables, times, badges and the confirm dialog.
// Text from the server is only ever rendered as text, never parsed as HTML.
import { createContext, type ComponentChildren } from 'preact';
import { useCallback, useContext, useEffect, useRef, useState } from 'preact/hooks';
import type { ApiError, Issue } from './api.js';

// ---- issues ----

/** An issue path relative to the object: a leading "apps[2]." (a server quoting the file's path) is dropped. */
export function relativePath(path: string): string {
  return path.replace(/^(apps|policies|namedLocations)\[\d+\]\.?/, '');
}

/** Whether an issue at `path` belongs to the field at `field` (itself, or inside it). */
export function under(path: string, field: string): boolean {
  const p = relativePath(path);
  return p === field || p.startsWith(`${field}.`) || p.startsWith(`${field}[`);
}

/** Issues per field (the first field that claims one wins), and those no field claims. */
export function splitIssues(issues: Issue[], fields: string[]): { of: (field: string) => Issue[]; rest: Issue[] } {
  const byField = new Map<string, Issue[]>();
  const rest: Issue[] = [];
  for (const issue of issues) {
    const field = fields.find((f) => under(issue.path, f));
    if (field === undefined) rest.push(issue);
    else byField.set(field, [...(byField.get(field) ?? []), issue]);
  }
  return { of: (field) => byField.get(field) ?? [], rest };
}

export const issueText = (i: Issue, withPath = true): string =>
  `${withPath ? `${relativePath(i.path) || '(root)'}: ` : ''}expected ${i.expected}, found ${i.found}`;

/** The refusal at the top of a form: its message, and the issues no field shows. */
export function IssueSummary({ id, error, rest }: { id: string; error: ApiError | undefined; rest: Issue[] }) {
  if (!error) return null;
  return (
    <div id={id} class="notice error" role="alert" data-testid="issue-summary">
      <p>{error.message}</p>
      {rest.length > 0 && (
        <ul>
          {rest.map((i) => (
            <li key={i.path + i.expected}>{issueText(i)}</li>
          ))}
        </ul>
      )}
    </div>
  );
}

// ---- fields ----

interface FieldBase {
  id: string;
  label: string;
  hint?: string;
  issues?: Issue[];
  /** Name each issue's path (a JSON editor, where the path says where in it). */
  showPaths?: boolean;
  required?: boolean;
}

function describedBy(p: FieldBase): string | undefined {
  const ids = [p.hint ? `${p.id}-hint` : '', p.issues?.length ? `${p.id}-error` : ''].filter(Boolean).join(' ');
  return ids || undefined;
}

function FieldFrame(p: FieldBase & { children: ComponentChildren }) {
  return (
    <div class={`field${p.issues?.length ? ' invalid' : ''}`}>
      <label for={p.id}>
        {p.label}
        {p.required && <span aria-hidden="true"> *</span>}
      </label>
      {p.children}
      {p.hint && (
        <p id={`${p.id}-hint`} class="hint">
          {p.hint}
        </p>
      )}
      {!!p.issues?.length && (
        <div id={`${p.id}-error`} class="field-error" data-testid={`${p.id}-error`}>
          {p.issues.length === 1 ? (
            <p>{issueText(p.issues[0]!, !!p.showPaths)}</p>
          ) : (
            <ul>
              {p.issues.map((i) => (
                <li key={i.path + i.expected}>{issueText(i, !!p.showPaths)}</li>
              ))}
            </ul>
          )}
        </div>
      )}
    </div>
  );
}

export function TextField(
  p: FieldBase & {
    value: string;
    onValue: (v: string) => void;
    type?: string;
    placeholder?: string;
    readOnly?: boolean;
    list?: string;
    autoComplete?: string;
    inputMode?: 'text' | 'url' | 'email' | 'numeric';
  },
) {
  return (
    <FieldFrame {...p}>
      <input
        id={p.id}
        name={p.id}
        type={p.type ?? 'text'}
        value={p.value}
        onInput={(e) => p.onValue(e.currentTarget.value)}
        placeholder={p.placeholder}
        readOnly={p.readOnly}
        aria-required={p.required ? 'true' : undefined}
        list={p.list}
        autoComplete={p.autoComplete ?? 'off'}
        inputMode={p.inputMode}
        spellcheck={false}
        aria-invalid={p.issues?.length ? 'true' : undefined}
        aria-describedby={describedBy(p)}
      />
    </FieldFrame>
  );
}

export function SelectField(
  p: FieldBase & { value: string; onValue: (v: string) => void; options: [value: string, text: string][] },
) {
  return (
    <FieldFrame {...p}>
      <select
        id={p.id}
        name={p.id}
        value={p.value}
        onChange={(e) => p.onValue(e.currentTarget.value)}
        aria-invalid={p.issues?.length ? 'true' : undefined}
        aria-describedby={describedBy(p)}
      >
        {p.options.map(([v, t]) => (
          <option key={v} value={v}>
            {t}
          </option>
        ))}
      </select>
    </FieldFrame>
  );
}

export function TextArea(p: FieldBase & { value: string; onValue: (v: string) => void; rows?: number }) {
  return (
    <FieldFrame {...p}>
      <textarea
        id={p.id}
        name={p.id}
        class="code"
        rows={p.rows ?? 16}
        value={p.value}
        onInput={(e) => p.onValue(e.currentTarget.value)}
        spellcheck={false}
        autoComplete="off"
        aria-invalid={p.issues?.length ? 'true' : undefined}
        aria-describedby={describedBy(p)}
      />
    </FieldFrame>
  );
}

export function CheckField(p: { id: string; label: string; checked: boolean; onValue: (v: boolean) => void }) {
  return (
    <div class="field check">
      <input
        id={p.id}
        name={p.id}
        type="checkbox"
        checked={p.checked}
        onChange={(e) => p.onValue(e.currentTarget.checked)}
      />
      <label for={p.id}>{p.label}</label>
    </div>
  );
}

/** A comma- or space-separated list as typed into a field. */
export const splitList = (text: string): string[] =>
  text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);

// ---- display ----

export function PageTitle({ children }: { children: ComponentChildren }) {
  return (
    <h1 id="page-title" tabIndex={-1}>
      {children}
    </h1>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="loading" role="status">
      Loading {what}…
    </p>
  );
}

export function ErrorNotice({ error, id }: { error: ApiError | undefined; id?: string }) {
  if (!error) return null;
  return (
    <div class="notice error" role="alert" id={id}>
      <p>
        {error.message}
        {error.status > 0 && <span class="muted"> ({error.code})</span>}
      </p>
    </div>
  );
}

/** A table that scrolls sideways on a narrow screen; the region is focusable so keyboards can scroll it. */
export function Table({ label, children, id }: { label: string; children: ComponentChildren; id?: string }) {
  return (
    <div class="table-wrap" role="region" aria-label={label} tabIndex={0}>
      <table id={id} data-testid={id}>
        {children}
      </table>
    </div>
  );
}

export function Empty({ cols, children }: { cols: number; children: ComponentChildren }) {
  return (
    <tr>
      <td colSpan={cols} class="muted">
        {children}
      </td>
    </tr>
  );
}

export type Tone = 'ok' | 'bad' | 'warn' | 'info' | 'plain';

export function Badge({ tone = 'plain', children }: { tone?: Tone; children: ComponentChildren }) {
  return <span class={`badge ${tone}`}>{children}</span>;
}

export const riskTone = (r: string): Tone => (r === 'high' ? 'bad' : r === 'medium' || r === 'low' ? 'warn' : 'plain');
export const resultTone = (r: string): Tone =>
  r === 'success' || r === 'allow' || r === 'granted'
    ? 'ok'
    : r === 'failure' || r === 'deny' || r === 'blocked'
      ? 'bad'
      : r === 'stepUp' || r === 'unsatisfied'
        ? 'warn'
        : 'plain';

const pad = (n: number) => String(n).padStart(2, '0');

/** Local time as YYYY-MM-DD HH:MM:SS: sortable, unambiguous, the same in every locale. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function ago(iso: string, now = Date.now()): string {
  const s = Math.round((now - new Date(iso).getTime()) / 1000);
  if (Number.isNaN(s)) return '';
  if (s < 0) return 'in the future';
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function Time({ iso, relative }: { iso: string | null | undefined; relative?: boolean }) {
  if (!iso) return <span class="muted">—</span>;
  return (
    <time dateTime={iso} title={iso}>
      {formatTime(iso)}
      {relative && <span class="muted"> ({ago(iso)})</span>}
    </time>
  );
}

export const dash = (v: string | number | null | undefined): string =>
  v === null || v === undefined || v === '' ? '—' : String(v);

/** A definition list of label → value rows. */
export function Facts({ rows, id }: { rows: [string, ComponentChildren][]; id?: string }) {
  return (
    <dl class="facts" id={id}>
      {rows.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v ?? '—'}</dd>
        </div>
      ))}
    </dl>
  );
}

export function Json({ value, id }: { value: unknown; id?: string }) {
  return (
    <pre class="json" id={id} tabIndex={0}>
      {JSON.stringify(value, null, 2)}
    </pre>
  );
}

export function LoadMore({ next, busy, onMore }: { next: string | null; busy: boolean; onMore: () => void }) {
  if (!next) return null;
  return (
    <p>
      <button type="button" onClick={onMore} disabled={busy} data-testid="load-more">
        {busy ? 'Loading…' : 'Load more'}
      </button>
    </p>
  );
}

// ---- confirm dialog ----

export interface ConfirmRequest {
  title: string;
  body: ComponentChildren;
  /** The confirming button's text, e.g. "Yes, revoke". */
  yes: string;
}

type Ask = (req: ConfirmRequest) => Promise<boolean>;
const ConfirmContext = createContext<Ask>(() => Promise.resolve(false));
export const useConfirm = (): Ask => useContext(ConfirmContext);

/**
 * One modal <dialog> for the whole console: focus moves into it (to Cancel, the safe
 * choice), Escape cancels, and focus returns to the button that opened it.
 */
export function ConfirmProvider({ children }: { children: ComponentChildren }) {
  const [req, setReq] = useState<(ConfirmRequest & { resolve: (ok: boolean) => void }) | null>(null);
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (req && dialog && !dialog.open) dialog.showModal();
  }, [req]);
  const ask = useCallback<Ask>((r) => new Promise<boolean>((resolve) => setReq({ ...r, resolve })), []);
  const answer = (ok: boolean) => {
    if (ref.current?.open) ref.current.close();
    req?.resolve(ok);
    setReq(null);
  };
  return (
    <ConfirmContext.Provider value={ask}>
      {children}
      <dialog
        ref={ref}
        id="confirm-dialog"
        aria-labelledby="confirm-title"
        onCancel={(e) => {
          e.preventDefault();
          answer(false);
        }}
      >
        {req && (
          <form
            method="dialog"
            onSubmit={(e) => {
              e.preventDefault();
              answer(true);
            }}
          >
            <h2 id="confirm-title">{req.title}</h2>
            <div class="dialog-body">{req.body}</div>
            <div class="actions">
              <button type="button" id="confirm-no" autoFocus onClick={() => answer(false)}>
                Cancel
              </button>
              <button type="submit" id="confirm-yes" class="danger">
                {req.yes}
              </button>
            </div>
          </form>
        )}
      </dialog>
    </ConfirmContext.Provider>
  );
}
