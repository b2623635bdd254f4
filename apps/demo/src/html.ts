/**
 * The demo's pages: server-rendered, no script, one stylesheet per origin, a CSP forbidding
 * everything else. Small on purpose — the demo shows the broker, not a UI framework.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export const DEMO_CSP =
  "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'";

export const esc = (value: unknown): string =>
  String(value ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export const DEMO_CSS = `body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#14171a;line-height:1.45}
header{background:#102a43;color:#fff;padding:.75rem 1.5rem}header a{color:#fff}
main{max-width:60rem;margin:2rem auto;padding:1.5rem 2rem;background:#fff;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.12)}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:1.75rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #d9dee3;vertical-align:top}
pre{background:#f1f3f5;padding:.75rem;overflow:auto;font-size:.85rem;border-radius:4px}
.residency{background:#fff4c2;border-left:4px solid #8a6d00;padding:.5rem .75rem}
.ok{color:#0a6b2f;font-weight:600}.refused{color:#a11b1b;font-weight:600}
.button,button{display:inline-block;padding:.55rem 1rem;border:1px solid #0b5cad;border-radius:6px;background:#0b5cad;color:#fff;text-decoration:none;font-size:1rem;cursor:pointer}
button.secondary{background:#fff;color:#0b5cad}
label{display:block;margin-top:.75rem}input{display:block;width:100%;max-width:24rem;box-sizing:border-box;padding:.5rem;margin:.25rem 0;font-size:1rem;border:1px solid #6b7280;border-radius:4px}
.error{padding:.75rem;background:#fdecec;border-left:4px solid #a11b1b}.note{color:#4b5563;font-size:.9rem}
a:focus,button:focus,input:focus{outline:3px solid #b45309;outline-offset:2px}`;

export function page(title: string, body: string, header = ''): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title><link rel="stylesheet" href="/demo.css"></head>
<body>${header ? `<header>${header}</header>` : ''}<main><h1>${esc(title)}</h1>
${body}</main></body></html>`;
}

export function send(
  res: ServerResponse,
  status: number,
  html: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-security-policy': DEMO_CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    ...headers,
  });
  res.end(html);
}

export function sendCss(res: ServerResponse): void {
  res.writeHead(200, {
    'content-type': 'text/css; charset=utf-8',
    'cache-control': 'public, max-age=300',
    'x-content-type-options': 'nosniff',
  });
  res.end(DEMO_CSS);
}

/** A urlencoded form body, at most 16 KiB. */
export async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > 16 * 1024) throw new Error('form too large');
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}
