/**
 * Server-rendered pages of the login. No script at all (they work without JavaScript and under
 * a CSP that forbids inline code); one small stylesheet served by the broker.
 */
export const LOGIN_CSP =
  "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'";

const esc = (s: unknown) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function layout(title: string, region: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title><link rel="stylesheet" href="/interaction/static/login.css"></head>
<body><main><h1>${esc(title)}</h1>${body}
<p class="region">Served by the Meridian broker of region <strong>${esc(region)}</strong>.</p></main></body></html>`;
}

export interface ChooserFederation {
  id: string;
  displayName: string;
}

export function chooserPage(o: {
  uid: string;
  region: string;
  federations: ChooserFederation[];
  message?: string;
  email?: string;
}): string {
  const list = o.federations.length
    ? `<ul class="federations">${o.federations
        .map(
          (f) =>
            `<li><a class="button" href="/interaction/${esc(o.uid)}/federation/${encodeURIComponent(f.id)}">${esc(f.displayName)}</a></li>`,
        )
        .join('')}</ul>`
    : '<p>No identity provider is available.</p>';
  const message = o.message ? `<p class="message" role="alert">${esc(o.message)}</p>` : '';
  return layout(
    'Sign in',
    o.region,
    `${message}<h2>Choose how to sign in</h2>${list}
<h2>Or use your email address</h2>
<form method="post" action="/interaction/${esc(o.uid)}/home-realm">
<label for="email">Email address</label>
<input id="email" name="email" type="email" autocomplete="email" required value="${esc(o.email)}">
<button type="submit">Continue</button></form>
<form method="post" action="/interaction/${esc(o.uid)}/cancel"><button type="submit" class="secondary">Cancel</button></form>`,
  );
}

export function errorPage(o: { title: string; message: string; region: string }): string {
  return layout(
    o.title,
    o.region,
    `<p role="alert">${esc(o.message)}</p><p>Go back to the application and start again.</p>`,
  );
}

export const LOGIN_CSS = `body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#14171a}
main{max-width:28rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.12)}
h1{font-size:1.5rem}h2{font-size:1rem;margin-top:1.5rem}ul{list-style:none;padding:0}li{margin:.5rem 0}
.button,button{display:inline-block;padding:.6rem 1rem;border:1px solid #0b5cad;border-radius:6px;background:#0b5cad;color:#fff;text-decoration:none;font-size:1rem;cursor:pointer}
button.secondary{background:#fff;color:#0b5cad;margin-top:1rem}
input{display:block;width:100%;box-sizing:border-box;padding:.5rem;margin:.25rem 0 .75rem;font-size:1rem;border:1px solid #6b7280;border-radius:4px}
.message{padding:.75rem;background:#fff4e5;border-left:4px solid #b45309}.region{color:#4b5563;font-size:.875rem;margin-top:2rem}
a:focus,button:focus,input:focus{outline:3px solid #f59e0b;outline-offset:2px}`;
