/**
 * The console's page frame and form components. Server-rendered, no script, no inline style
 * (CONSOLE_CSP forbids both); every input has a label, errors are tied to their field with
 * aria-describedby/aria-invalid and summarised at the top of the form.
 */
import { Html, html, join } from './html';

export const CONSOLE_CSP =
  "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

export type Section =
  'home' | 'regions' | 'federations' | 'clients' | 'resources' | 'keys' | 'policies' | 'subjects' | 'audit';

const SECTIONS: { id: Section; label: string; scope: 'meridian:admin' | 'meridian:compliance' }[] = [
  { id: 'regions', label: 'Regions', scope: 'meridian:admin' },
  { id: 'federations', label: 'Federations', scope: 'meridian:admin' },
  { id: 'clients', label: 'Clients', scope: 'meridian:admin' },
  { id: 'resources', label: 'Resources', scope: 'meridian:admin' },
  { id: 'keys', label: 'Keys', scope: 'meridian:admin' },
  { id: 'policies', label: 'Residency policies', scope: 'meridian:compliance' },
  { id: 'subjects', label: 'Data subjects', scope: 'meridian:compliance' },
  { id: 'audit', label: 'Audit trail', scope: 'meridian:compliance' },
];

export function sectionsFor(scopes: readonly string[]) {
  return SECTIONS.filter((s) => scopes.includes(s.scope));
}

export interface Frame {
  base: string;
  region: string;
  /** Absent on pages shown without a session (signed out, sign-in failed). */
  who?: { sub: string; scopes: string[]; csrf: string };
  section?: Section;
}

export interface Notice {
  kind: 'success' | 'info' | 'warning' | 'error';
  text: Html | string;
}

export function layout(frame: Frame, title: string, body: Html, notice?: Notice): Html {
  const u = (p: string) => `${frame.base}/console${p}`;
  const nav = frame.who
    ? html`<nav aria-label="Console sections">
        <ul>
          ${sectionsFor(frame.who.scopes).map(
            (s) =>
              html`<li>
                <a href="${u(`/${s.id}`)}" ${frame.section === s.id ? html` aria-current="page"` : ''}
                  >${s.label}</a
                >
              </li>`,
          )}
        </ul>
      </nav>`
    : '';
  const who = frame.who
    ? html`<div class="who">
        <span>Signed in as <code>${frame.who.sub}</code></span>
        <span>${frame.who.scopes.length ? frame.who.scopes.join(', ') : 'no console role'}</span>
        <form method="post" action="${u('/logout')}">
          <input type="hidden" name="_csrf" value="${frame.who.csrf}" /><button type="submit" class="link">
            Sign out
          </button>
        </form>
      </div>`
    : '';
  const banner = notice
    ? html`<div class="notice ${notice.kind}" role="${notice.kind === 'error' ? 'alert' : 'status'}">
        ${notice.text}
      </div>`
    : '';
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${title} — Meridian console (${frame.region})</title>
        <link rel="stylesheet" href="${u('/static/console.css')}" />
      </head>
      <body>
        <a class="skip" href="#main">Skip to content</a>
        <header class="top">
          <div class="bar">
            <a class="brand" href="${u('')}">Meridian console</a>
            <span class="region">Region <strong>${frame.region}</strong></span
            >${who}
          </div>
          ${nav}
        </header>
        <main id="main" tabindex="-1">
          <h1>${title}</h1>
          ${banner}${body}
        </main>
        <footer>
          <p>
            Every action goes through this broker’s admin and compliance API with your own token, and is
            audited under your subject identifier.
          </p>
        </footer>
      </body>
    </html>`;
}

// ---- forms

export type FormValues = Record<string, string | string[] | boolean | undefined>;
export type FieldErrors = Record<string, string[]>;

export interface FieldSpec {
  name: string;
  label: string;
  hint?: string;
  type?: 'text' | 'url' | 'email' | 'password' | 'number' | 'datetime-local' | 'search';
  required?: boolean;
  autocomplete?: string;
  readonly?: boolean;
  /** Extra attributes are not supported on purpose: nothing unescaped reaches the page. */
  inputmode?: 'text' | 'numeric' | 'url';
}

const fid = (name: string) => `f-${name.replace(/[^A-Za-z0-9_-]/g, '-')}`;

function describedBy(name: string, hint?: string, errors?: string[]): Html {
  const ids = [hint ? `${fid(name)}-hint` : '', errors?.length ? `${fid(name)}-error` : ''].filter(Boolean);
  return ids.length ? html` aria-describedby="${ids.join(' ')}"` : html``;
}

function fieldMessages(name: string, hint?: string, errors?: string[]): Html {
  return html`${hint ? html`<p class="hint" id="${fid(name)}-hint">${hint}</p>` : ''}${
    errors?.length
      ? html`<p class="field-error" id="${fid(name)}-error">
          <span class="visually-hidden">Error: </span>${errors.join(' ')}
        </p>`
      : ''
  }`;
}

function str(v: FormValues[string]): string {
  if (Array.isArray(v)) return v.join(' ');
  if (typeof v === 'boolean') return v ? 'true' : '';
  return v ?? '';
}

export function input(spec: FieldSpec, values: FormValues, errors: FieldErrors = {}): Html {
  const err = errors[spec.name];
  return html`<div class="field${err?.length ? ' invalid' : ''}">
    <label for="${fid(spec.name)}"
      >${spec.label}${spec.required ? html` <span class="req">(required)</span>` : ''}</label
    >
    ${fieldMessages(spec.name, spec.hint, err)}<input
      id="${fid(spec.name)}"
      name="${spec.name}"
      type="${spec.type ?? 'text'}"
      value="${spec.type === 'password' ? '' : str(values[spec.name])}"
      ${spec.required ? html` required` : ''}${spec.readonly ? html` readonly` : ''}${spec.autocomplete ? html` autocomplete="${spec.autocomplete}"` : ''}${spec.inputmode ? html` inputmode="${spec.inputmode}"` : ''}${err?.length ? html` aria-invalid="true"` : ''}${describedBy(spec.name, spec.hint, err)}
    />
  </div>`;
}

export function textarea(
  spec: FieldSpec & { rows?: number; code?: boolean },
  values: FormValues,
  errors: FieldErrors = {},
): Html {
  const err = errors[spec.name];
  return html`<div class="field${err?.length ? ' invalid' : ''}">
    <label for="${fid(spec.name)}"
      >${spec.label}${spec.required ? html` <span class="req">(required)</span>` : ''}</label
    >
    ${fieldMessages(spec.name, spec.hint, err)}<textarea
      id="${fid(spec.name)}"
      name="${spec.name}"
      rows="${spec.rows ?? 4}"
      ${spec.code ? html` class="code" spellcheck="false"` : ''}${spec.required ? html` required` : ''}${err?.length ? html` aria-invalid="true"` : ''}${describedBy(spec.name, spec.hint, err)}
    >
${str(values[spec.name])}</textarea>
  </div>`;
}

export function select(
  spec: FieldSpec & { options: { value: string; label: string }[] },
  values: FormValues,
  errors: FieldErrors = {},
): Html {
  const err = errors[spec.name];
  const current = str(values[spec.name]);
  return html`<div class="field${err?.length ? ' invalid' : ''}">
    <label for="${fid(spec.name)}">${spec.label}</label> ${fieldMessages(spec.name, spec.hint, err)}<select
      id="${fid(spec.name)}"
      name="${spec.name}"
      ${err?.length ? html` aria-invalid="true"` : ''}${describedBy(spec.name, spec.hint, err)}
    >
      ${spec.options.map((o) => html`<option value="${o.value}" ${o.value === current ? html` selected` : ''}>${o.label}</option>`)}
    </select>
  </div>`;
}

export function checkbox(spec: FieldSpec, values: FormValues, errors: FieldErrors = {}): Html {
  const err = errors[spec.name];
  return html`<div class="field check${err?.length ? ' invalid' : ''}">
    <input
      id="${fid(spec.name)}"
      name="${spec.name}"
      type="checkbox"
      value="true"
      ${values[spec.name] === true || values[spec.name] === 'true' ? html` checked` : ''}${describedBy(spec.name, spec.hint, err)}
    />
    <label for="${fid(spec.name)}">${spec.label}</label>${fieldMessages(spec.name, spec.hint, err)}
  </div>`;
}

export function checkboxGroup(
  spec: FieldSpec & { options: { value: string; label: string }[] },
  values: FormValues,
  errors: FieldErrors = {},
): Html {
  const err = errors[spec.name];
  const v = values[spec.name];
  const selected = new Set(Array.isArray(v) ? v : typeof v === 'string' && v ? [v] : []);
  return html`<fieldset
    class="field${err?.length ? ' invalid' : ''}"
    ${describedBy(spec.name, spec.hint, err)}
  >
    <legend>${spec.label}</legend>
    ${fieldMessages(spec.name, spec.hint, err)}${spec.options.map(
      (o, i) =>
        html`<div class="check">
          <input
            id="${fid(spec.name)}-${i}"
            name="${spec.name}"
            type="checkbox"
            value="${o.value}"
            ${selected.has(o.value) ? html` checked` : ''}
          /><label for="${fid(spec.name)}-${i}">${o.label}</label>
        </div>`,
    )}
  </fieldset>`;
}

/** The list of problems at the top of a form, each linking to its field. */
export function errorSummary(
  errors: FieldErrors,
  general: string[] = [],
  labels: Record<string, string> = {},
): Html {
  const items = [
    ...general.map((g) => html`<li>${g}</li>`),
    ...Object.entries(errors).flatMap(([name, messages]) =>
      messages.map((m) => html`<li><a href="#${fid(name)}">${labels[name] ?? name}: ${m}</a></li>`),
    ),
  ];
  if (!items.length) return html``;
  return html`<div class="error-summary" role="alert" aria-labelledby="error-summary-title">
    <h2 id="error-summary-title">There is a problem</h2>
    <ul>
      ${items}
    </ul>
  </div>`;
}

export function csrfField(csrf: string): Html {
  return html`<input type="hidden" name="_csrf" value="${csrf}" />`;
}

/** A value as readable text: JSON for objects and arrays, `—` for nothing. */
export function display(value: unknown): string {
  if (value === undefined || value === null || value === '') return '—';
  if (Array.isArray(value) && value.every((v) => typeof v !== 'object')) return value.join(', ') || '—';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

export function definitionList(entries: [string, unknown][]): Html {
  return html`<dl class="facts">
    ${entries.map(
      ([k, v]) =>
        html`<div>
          <dt>${k}</dt>
          <dd>${v instanceof Html ? v : display(v)}</dd>
        </div>`,
    )}
  </dl>`;
}

export { Html, html, join };
