// The proxyctl administration console: a single-page app over /api/v1, served by
// the relay on its admin host at / (assets under /assets/, hash routes #/apps…).
// It asks /api/v1/me who is signed in, hides every write control from readers,
// and renders each page from src/admin/api-types.ts's operations.
//
// Selectors for end-to-end tests (Playwright). Stable ids unless noted; buttons and
// links are found by role and text.
//   Shell: nav links by text: Overview, Apps, Connectors, Policies, Sign-ins, Risk,
//     Audit, Users (the current one has aria-current="page"); #caller (name and role),
//     #read-only-banner (readers: "read-only (reader role)"), button "Sign out"
//     (form POST to /.proxyctl/logout), #page-title (each page's h1, focused on
//     navigation), #signed-out (session gone: link "Sign in again"), #forbidden (403).
//   Confirm dialog: #confirm-dialog (role dialog), #confirm-yes (text "Yes, revoke",
//     "Yes, delete", "Yes, remove", "Yes, confirm compromised"), #confirm-no "Cancel".
//   Forms: every field's error is #<field-id>-error next to it (aria-describedby);
//     issues no field claims, and the refusal's message, are in #<form>-summary
//     (role alert): #app-form-summary, #policy-form-summary, #location-form-summary,
//     #group-form-summary, #user-form-summary, #whatif-summary.
//   Overview (#/): #replicas-table, #signins-chart, #requests-chart (or
//     [data-testid=requests-unavailable]), [data-testid=connectors-online|offline|
//     revoked|expiring], [data-testid=apps-total|file|api|not-in-force],
//     [data-testid=risk-users|risk-detections], button "Refresh".
//   Apps (#/apps, #/apps/NAME, #/apps/new, #/apps/NAME/edit): #apps-table with rows
//     [data-testid=app-row-NAME]; link "Publish app"; form #app-form: #app-name,
//     #app-external-url, #app-internal-url, #app-preauth (select oidc|passthrough),
//     #app-group, #app-backend-timeout, #app-assignment (select ''|assigned|any),
//     #app-assigned-users, #app-assigned-groups, #app-extra (other keys as JSON),
//     button "Publish" (new) or "Save" (edit). Detail: #app-detail, #app-spec,
//     [data-testid=file-managed] ("Defined in the configuration file"), link "Edit",
//     button "Remove".
//   Connectors (#/connectors, #/connectors/ID): #connectors-table with rows
//     [data-testid=connector-row-NAME]; #groups-table with rows [data-testid=group-row-NAME]
//     and button "Delete" (API groups); form #group-form: #group-name,
//     #group-description, button "Create group". Detail: #connector-detail,
//     #channels-table, #certificates-table, button "Revoke" (not revoked) or "Delete".
//   Policies (#/policies, #/policies/NAME, #/policies/new, #/locations/NAME,
//     #/locations/new): #policies-table ([data-testid=policy-row-NAME]),
//     #locations-table ([data-testid=location-row-NAME]), links "New policy",
//     "New named location". Editor: #policy-state (select on|reportOnly|off),
//     #policy-json (the whole spec; its issues in #policy-json-error), button "Save",
//     button "Remove", #policy-saved after a save; #location-json likewise.
//     What-if (on #/policies and each policy page): #whatif-app, #whatif-user,
//     #whatif-email, #whatif-groups, #whatif-ip, #whatif-platform, #whatif-risk,
//     #whatif-user-risk, #whatif-time, #whatif-acr, #whatif-mfa, #whatif-device-cert,
//     button "Run what-if", button "What-if with this draft" (policy editor only);
//     #whatif-decision (data-decision=allow|deny|stepUp; the draft's when run with
//     it), #whatif-baseline (the saved policies' decision, draft runs only),
//     #whatif-policies (each policy's result).
//   Sign-ins (#/signins?user=&app=&result=&risk=&since=, #/signins/ID): form
//     #signins-filter: #signins-user, #signins-app, #signins-result, #signins-risk,
//     #signins-since, button "Filter"; #signins-table ([data-testid=signin-row-ID],
//     the time links to the detail); button "Load more"; #signins-results-chart,
//     #signin-locations-table. Detail: #signin-detail, #signin-trace-id,
//     #signin-policies, #signin-detections.
//   Risk (#/risk, #/risk?all=1): #risk-all (checkbox), #risk-users-table
//     ([data-testid=risk-user-NAME] with buttons "Dismiss", "Confirm compromised"),
//     #detections-table, button "Load more".
//   Audit (#/audit?actor=&action=): #audit-actor, #audit-action, button "Filter",
//     #audit-table ([data-testid=audit-row-ID], button "Details" → #audit-details-ID),
//     button "Load more".
//   Users (#/users): #users-table ([data-testid=user-row-NAME], button "Remove");
//     form #user-form: #user-username, #user-email, #user-name, #user-groups,
//     #user-roles, #user-password, button "Add user"; #user-created and
//     #user-password-once (the generated password, shown once); #users-external
//     (users are managed at an external provider).
import { render } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { createClient, type Client } from './api.js';
import { AppDetail, AppForm, AppsPage } from './pages/apps.js';
import { AuditPage } from './pages/audit.js';
import { ConnectorDetail, ConnectorsPage } from './pages/connectors.js';
import { OverviewPage } from './pages/overview.js';
import { ObjectPage, PoliciesPage } from './pages/policies.js';
import { RiskPage } from './pages/risk.js';
import { SignInDetail, SignInsPage } from './pages/signins.js';
import { UsersPage } from './pages/users.js';
import { href, useRoute, type Route } from './router.js';
import { SessionContext, useLoad, type Session } from './session.js';
import { ConfirmProvider, ErrorNotice, Loading, PageTitle } from './ui.js';

const NAV: [section: string, text: string][] = [
  ['', 'Overview'],
  ['apps', 'Apps'],
  ['connectors', 'Connectors'],
  ['policies', 'Policies'],
  ['signins', 'Sign-ins'],
  ['risk', 'Risk'],
  ['audit', 'Audit'],
  ['users', 'Users'],
];

/** Which nav entry a route belongs to (named locations live with the policies). */
const sectionOf = (r: Route): string => (r.path[0] === 'locations' ? 'policies' : (r.path[0] ?? ''));

function NotFound() {
  return (
    <>
      <PageTitle>Not found</PageTitle>
      <p>
        This page does not exist. <a href={href([])}>Go to the overview</a>.
      </p>
    </>
  );
}

function Page({ route }: { route: Route }) {
  const [section, a, b] = route.path;
  switch (section) {
    case undefined:
    case 'overview':
      return <OverviewPage />;
    case 'apps':
      if (a === undefined) return <AppsPage />;
      if (a === 'new' && b === undefined) return <AppForm />;
      if (b === 'edit') return <AppForm name={a} />;
      return b === undefined ? <AppDetail name={a} /> : <NotFound />;
    case 'connectors':
      if (a === undefined) return <ConnectorsPage />;
      return b === undefined ? <ConnectorDetail id={a} /> : <NotFound />;
    case 'policies':
    case 'locations': {
      const kind = section === 'policies' ? 'policy' : 'location';
      if (a === undefined) return section === 'policies' ? <PoliciesPage /> : <NotFound />;
      if (b !== undefined) return <NotFound />;
      return a === 'new' ? <ObjectPage kind={kind} /> : <ObjectPage key={a} kind={kind} name={a} />;
    }
    case 'signins':
      if (a === undefined) return <SignInsPage query={route.query} />;
      return b === undefined ? <SignInDetail id={a} /> : <NotFound />;
    case 'risk':
      return <RiskPage query={route.query} />;
    case 'audit':
      return <AuditPage query={route.query} />;
    case 'users':
      return <UsersPage />;
    default:
      return <NotFound />;
  }
}

function Shell({ session }: { session: Session }) {
  const route = useRoute();
  const section = sectionOf(route);
  const pathKey = route.path.join('/');
  // A new page: its title is announced and keyboard focus starts there (not on a filter change).
  // Not on the first load: focus stays at the top, where Tab finds the skip link, then the sections.
  const loaded = useRef(false);
  useEffect(() => {
    const label = NAV.find(([s]) => s === section)?.[1] ?? 'proxyctl';
    document.title = `${label} · proxyctl administration`;
    if (loaded.current) document.getElementById('page-title')?.focus();
    loaded.current = true;
  }, [pathKey, section]);
  const { caller, canWrite } = session;
  return (
    <SessionContext.Provider value={session}>
      <ConfirmProvider>
        <a
          class="skip"
          href="#main"
          onClick={(e) => (e.preventDefault(), document.getElementById('page-title')?.focus())}
        >
          Skip to content
        </a>
        <header class="top">
          <span class="brand">proxyctl</span>
          <span id="caller" class="caller">
            {caller.name ?? caller.subject} <span class="role">({caller.role})</span>
          </span>
          <form method="post" action="/.proxyctl/logout" class="signout">
            <button type="submit">Sign out</button>
          </form>
        </header>
        <nav aria-label="Sections" class="sections">
          <ul>
            {NAV.map(([s, text]) => (
              <li key={s}>
                <a href={href(s ? [s] : [])} aria-current={s === section ? 'page' : undefined}>
                  {text}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        {!canWrite && (
          <p id="read-only-banner" class="banner" role="note">
            read-only (reader role)
          </p>
        )}
        <main id="main">
          <Page route={route} />
        </main>
      </ConfirmProvider>
    </SessionContext.Provider>
  );
}

function SignedOut() {
  return (
    <main id="signed-out" class="standalone">
      <h1>Signed out</h1>
      <p>Your session has ended.</p>
      <p>
        <a class="button primary" href="/">
          Sign in again
        </a>
      </p>
    </main>
  );
}

function App({ api }: { api: Client }) {
  const [signedOut, setSignedOut] = useState(false);
  useEffect(() => {
    api.onUnauthenticated = () => setSignedOut(true);
  }, [api]);
  const me = useLoad(() => api.me(), []);
  const session = useMemo<Session | undefined>(
    () => me.data && { api, caller: me.data.caller, canWrite: me.data.caller.role === 'admin' },
    [api, me.data],
  );
  if (signedOut || me.error?.status === 401) return <SignedOut />;
  if (me.error?.status === 403)
    return (
      <main id="forbidden" class="standalone">
        <h1>No access</h1>
        <p>{me.error.message}</p>
        <p>The administration console is for administrators and readers of this relay.</p>
        <form method="post" action="/.proxyctl/logout">
          <button type="submit">Sign out</button>
        </form>
      </main>
    );
  if (me.error)
    return (
      <main class="standalone">
        <h1>The console could not start</h1>
        <ErrorNotice error={me.error} />
        <button type="button" onClick={me.reload}>
          Try again
        </button>
      </main>
    );
  if (!session) return <Loading what="the console" />;
  return <Shell session={session} />;
}

const root = document.getElementById('root');
if (root) {
  root.textContent = '';
  render(<App api={createClient()} />, root);
}
