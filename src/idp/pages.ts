// HTML for the embedded provider's own pages: sign-in (password, then a code
// when the user has a second factor), device-code entry and the logout step.
// Every value is escaped; forms post back to the same interaction. Headers and
// escaping are src/http/render.ts's: one set for every page relay and provider show.
import { escapeHtml as esc } from '../http/render.js';

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;background:#f5f6f8;margin:0}
main{max-width:22rem;margin:10vh auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}
h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;margin:.8rem 0 .2rem}input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}
button{margin-top:1.2rem;width:100%;padding:.6rem;font-size:1rem;background:#1f5fbf;color:#fff;border:0;border-radius:4px;cursor:pointer}
.err{color:#b00020;margin:.5rem 0}.meta{color:#666;font-size:.85rem;margin-top:1rem}`;

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex"><title>${esc(title)}</title><style>${STYLE}</style></head><body><main>${body}</main></body></html>\n`;
}

export function loginPage(
  action: string,
  opts: { client?: string; error?: string; username?: string; stepUp?: boolean },
): string {
  return page(
    'Sign in',
    `<h1>Sign in${opts.client ? ` to ${esc(opts.client)}` : ''}</h1>
${opts.stepUp ? '<p>This application requires multi-factor authentication. Sign in again with your code.</p>' : ''}
${opts.error ? `<p class="err" role="alert">${esc(opts.error)}</p>` : ''}
<form method="post" action="${esc(action)}" autocomplete="on">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" required autofocus value="${esc(opts.username ?? '')}">
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" id="submit">Sign in</button></form>
<p class="meta">proxyctl sign-in</p>`,
  );
}

export function totpPage(action: string, opts: { error?: string }): string {
  return page(
    'Verification code',
    `<h1>Enter your code</h1>
<p>Open your authenticator app and enter the 6-digit code for proxyctl.</p>
${opts.error ? `<p class="err" role="alert">${esc(opts.error)}</p>` : ''}
<form method="post" action="${esc(action)}" autocomplete="off">
<label for="code">Code</label><input id="code" name="code" inputmode="numeric" pattern="[0-9]{6}" maxlength="6" required autofocus>
<button type="submit" id="submit">Verify</button></form>`,
  );
}

export function messagePage(title: string, text: string): string {
  return page(title, `<h1>${esc(title)}</h1><p>${esc(text)}</p>`);
}

/** oidc-provider hands us its own form HTML (hidden inputs); we wrap it, optionally auto-submitting. */
export function formPage(title: string, text: string, formHtml: string, autoSubmit: boolean, nonce?: string): string {
  const script = autoSubmit
    ? `<script${nonce ? ` nonce="${esc(nonce)}"` : ''}>document.forms[0].submit()</script>`
    : '';
  return page(title, `<h1>${esc(title)}</h1><p>${esc(text)}</p>${formHtml}${script}`);
}
