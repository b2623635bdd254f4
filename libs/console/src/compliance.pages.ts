/**
 * Pages for compliance officers (scope `meridian:compliance`): residency policies (edit, dry
 * run before saving, versions and their differences), data-subject requests (export, erasure
 * with confirmation) and the audit trail.
 */
import { documentChanges, type DocumentChange, type JurisdictionChange } from '@meridian/admin';
import { refusal } from './admin.pages';
import type { ConsoleAnswer, ConsoleService, PageContext } from './console.service';
import { text, utcDateTime } from './forms';
import { checkReview, reviewToken } from './session';
import {
  csrfField,
  definitionList,
  display,
  errorSummary,
  html,
  input,
  textarea,
  type FieldErrors,
  type FormValues,
  type Html,
  type Notice,
} from './views';

const enc = encodeURIComponent;

const POLICY_TEMPLATE = `{
  "appliesTo": { "jurisdictions": [] },
  "homeRegion": "",
  "storageRegions": [],
  "release": { "default": ["sub", "residency"], "byRegion": {} },
  "retention": { "auditDays": 365, "inactiveProfileDays": 730 },
  "pseudonymiseForeignLogs": true
}`;

const POLICY_ID = /^[a-z0-9][a-z0-9._-]{0,63}$/i;

/** The submitted document with its new lines as the browser will send them back (LF). */
function documentOf(body: Record<string, unknown>): string {
  return typeof body.document === 'string' ? body.document.replace(/\r\n?/g, '\n') : '';
}

function pretty(value: unknown): string {
  return JSON.stringify(value, null, 2);
}

function changesTable(changes: DocumentChange[], caption: string): Html {
  if (!changes.length) return html`<p>No field changes.</p>`;
  return html`<table>
    <caption>
      ${caption}
    </caption>
    <thead>
      <tr>
        <th scope="col">Field</th>
        <th scope="col">Change</th>
        <th scope="col">Before</th>
        <th scope="col">After</th>
      </tr>
    </thead>
    <tbody>
      ${changes.map(
        (c) =>
          html`<tr>
            <th scope="row"><code>${c.path}</code></th>
            <td>${c.kind}</td>
            <td class="diff-removed">
              ${c.kind === 'added' ? '—' : html`<code>${JSON.stringify(c.before)}</code>`}
            </td>
            <td class="diff-added">
              ${c.kind === 'removed' ? '—' : html`<code>${JSON.stringify(c.after)}</code>`}
            </td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

function decisionText(d: JurisdictionChange['before'], changed: JurisdictionChange['changed']): Html {
  if (!d) return html`<em>not covered: people from there are refused</em>`;
  const part = (key: JurisdictionChange['changed'][number], text: string) =>
    changed.includes(key) ? html`<strong>${text}</strong>` : text;
  const release = [
    `by default ${d.release.default.join(', ')}`,
    ...Object.entries(d.release.byRegion).map(([region, claims]) => `to ${region} ${claims.join(', ')}`),
  ].join('; ');
  return html`<ul class="decision">
    <li>${part('policy', `policy ${d.policy}`)}</li>
    <li>${part('homeRegion', `home ${d.homeRegion}`)}</li>
    <li>${part('storageRegions', `stored in ${d.storageRegions.join(', ')}`)}</li>
    <li>${part('processingRegions', `processed in ${d.processingRegions.join(', ')}`)}</li>
    <li>${part('release', `released: ${release}`)}</li>
    <li>
      ${part('retention', `audit kept ${d.retention.auditDays} days, inactive profiles ${d.retention.inactiveProfileDays} days`)}
    </li>
    <li>
      ${part('pseudonymiseForeignLogs', `foreign logs ${d.pseudonymiseForeignLogs ? 'pseudonymised' : 'not pseudonymised'}`)}
    </li>
  </ul>`;
}

function jurisdictionsTable(changes: JurisdictionChange[]): Html {
  if (!changes.length) return html`<p>No jurisdiction’s decision changes.</p>`;
  return html`<table id="jurisdiction-changes">
    <caption>
      Jurisdictions whose decision changes
    </caption>
    <thead>
      <tr>
        <th scope="col">Jurisdiction</th>
        <th scope="col">What changes</th>
        <th scope="col">Now</th>
        <th scope="col">With this version</th>
      </tr>
    </thead>
    <tbody>
      ${changes.map(
        (j) =>
          html`<tr>
            <th scope="row">${j.jurisdiction}</th>
            <td>${j.changed.join(', ')}</td>
            <td>${decisionText(j.before, j.changed)}</td>
            <td>${decisionText(j.after, j.changed)}</td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

export class CompliancePages {
  constructor(private readonly console: ConsoleService) {}

  // ---- policies

  async policies(ctx: PageContext): Promise<ConsoleAnswer> {
    const answer = await ctx.api.call('GET', '/compliance/policies');
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    const list = answer.body as {
      id: string;
      version: number;
      ref: string;
      document: Record<string, unknown> & { appliesTo: { jurisdictions: string[] } };
    }[];
    return this.console.page(
      ctx.frame('policies'),
      200,
      'Residency policies',
      html`<p>
          Which jurisdictions each policy covers, where their people’s data lives, and what may leave. Every
          save is a new version; a dry run shows what a version would change before it is saved.
        </p>
        <table>
          <caption>
            Current versions
          </caption>
          <thead>
            <tr>
              <th scope="col">Policy</th>
              <th scope="col">Version</th>
              <th scope="col">Jurisdictions</th>
              <th scope="col">Home region</th>
              <th scope="col">Storage regions</th>
            </tr>
          </thead>
          <tbody>
            ${list.map(
              (p) =>
                html`<tr>
                  <th scope="row"><a href="${ctx.u(`/policies/${enc(p.id)}`)}">${p.id}</a></th>
                  <td>${p.version}</td>
                  <td>${display(p.document.appliesTo.jurisdictions)}</td>
                  <td>${display(p.document.homeRegion)}</td>
                  <td>${display(p.document.storageRegions)}</td>
                </tr>`,
            )}
          </tbody>
        </table>
        <h2>New policy</h2>
        ${this.editForm(ctx, { id: '', document: POLICY_TEMPLATE }, {}, true)}`,
    );
  }

  private editForm(ctx: PageContext, values: FormValues, errors: FieldErrors, isNew: boolean): Html {
    return html`<form method="post" action="${ctx.u('/policies/dry-run')}" novalidate>
      ${csrfField(ctx.csrf)}
      ${
        isNew
          ? input(
              {
                name: 'id',
                label: 'Policy id',
                required: true,
                hint: 'Letters, digits, . _ -; e.g. eu-gdpr.',
              },
              values,
              errors,
            )
          : html`<input type="hidden" name="id" value="${String(values.id)}" />`
      }
      ${textarea(
        {
          name: 'document',
          label: 'Policy document (JSON)',
          rows: 18,
          code: true,
          required: true,
          hint: 'appliesTo.jurisdictions, homeRegion, storageRegions (home first), processingRegions, release.default / release.byRegion, retention, pseudonymiseForeignLogs.',
        },
        values,
        errors,
      )}
      <div class="actions"><button type="submit">Dry run</button></div>
    </form>`;
  }

  async policy(ctx: PageContext, id: string): Promise<ConsoleAnswer> {
    const answer = await ctx.api.call('GET', `/compliance/policies/${enc(id)}`);
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status === 404)
      return this.console.page(
        ctx.frame('policies'),
        404,
        'Not found',
        html`<p>Policy ${id} does not exist.</p>`,
      );
    const body = answer.body as {
      current: { version: number; ref: string; document: Record<string, unknown> };
      history: {
        version: number;
        ref: string;
        createdBy: string;
        createdAt: string;
        document: Record<string, unknown>;
      }[];
    };
    const history = body.history;
    const versions = history.map((h, i) => {
      const previous = history[i + 1];
      return html`<section class="version" aria-labelledby="v-${h.version}">
        <h3 id="v-${h.version}">${h.ref}</h3>
        <p>Saved ${h.createdAt} by <code>${h.createdBy}</code>.</p>
        ${previous ? changesTable(documentChanges(previous.document, h.document), `Changes from version ${previous.version} to ${h.version}`) : html`<p>First version.</p>`}
        <details>
          <summary>Document of version ${h.version}</summary>
          <pre>${pretty(h.document)}</pre>
        </details>
      </section>`;
    });
    const saved = ctx.req.query.get('done') === 'saved';
    return this.console.page(
      ctx.frame('policies'),
      200,
      `Policy ${id}`,
      html`<p>Current version: <strong>${body.current.ref}</strong>.</p>
        <h2>Edit</h2>
        <p>
          Change the document, then run a dry run: it validates the document and shows what would change
          before you save.
        </p>
        ${this.editForm(ctx, { id, document: pretty(body.current.document) }, {}, false)}
        <h2>Versions</h2>
        ${versions}`,
      saved ? { kind: 'success', text: `Saved: ${body.current.ref} is the current version.` } : undefined,
    );
  }

  /** POST /console/policies/dry-run — validation, changes, affected jurisdictions and subjects. */
  async dryRun(ctx: PageContext, notice?: Notice): Promise<ConsoleAnswer> {
    const id = text(ctx.req.body, 'id');
    const document = documentOf(ctx.req.body);
    const values: FormValues = { id, document };
    const errors: FieldErrors = {};
    if (!POLICY_ID.test(id))
      (errors.id ??= []).push('must be 1-64 letters, digits, . _ - (starting with a letter or digit)');
    let parsed: unknown;
    try {
      parsed = JSON.parse(document);
    } catch (err) {
      (errors.document ??= []).push(`is not valid JSON: ${(err as Error).message}`);
    }
    if (Object.keys(errors).length) return this.dryRunPage(ctx, values, errors, undefined, 400);
    const answer = await ctx.api.call('POST', `/compliance/policies/${enc(id)}/dry-run`, parsed);
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status !== 200) {
      const fieldErrors = (answer.body?.errors ?? []) as { field: string; message: string }[];
      errors.document = fieldErrors.length
        ? fieldErrors.map((e) => `${e.field}: ${e.message}`)
        : [String(answer.body?.error_description ?? 'the document was refused')];
      return this.dryRunPage(ctx, values, errors, undefined, answer.status);
    }
    return this.dryRunPage(ctx, values, {}, answer.body, 200, notice);
  }

  private dryRunPage(
    ctx: PageContext,
    values: FormValues,
    errors: FieldErrors,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the API's dry-run answer (CONTRACT.md)
    report: any,
    status: number,
    notice?: Notice,
  ): ConsoleAnswer {
    const id = String(values.id);
    const document = String(values.document);
    const labels = { id: 'Policy id', document: 'Policy document (JSON)' };
    const result = report
      ? html`<section aria-labelledby="dry-run-title" id="dry-run">
          <h2 id="dry-run-title">Dry run of ${id} version ${report.candidateVersion}</h2>
          <p class="notice success" role="status">
            The document is
            valid.${report.currentVersion ? ` It would replace version ${report.currentVersion}.` : ' It would be a new policy.'}
          </p>
          <h3>Changes against the current version</h3>
          ${changesTable(report.changes as DocumentChange[], 'Field changes')}
          <h3>Decisions</h3>
          ${jurisdictionsTable(report.jurisdictions as JurisdictionChange[])}
          <h3>Subjects stored in region ${report.region}</h3>
          ${definitionList([
            ['Subjects examined', report.subjects],
            ['Would change home region', report.changeHomeRegion],
            ['Would have fewer claims released', report.loseReleasedClaims],
            ['Would be covered by no policy', report.loseCoverage],
            ['Could no longer be stored here', report.leaveRegion],
          ])}
          <form method="post" action="${ctx.u('/policies/save')}">
            ${csrfField(ctx.csrf)} <input type="hidden" name="id" value="${id}" /><input
              type="hidden"
              name="document"
              value="${document}"
            />
            <input type="hidden" name="reviewed" value="${reviewToken(ctx.keys, ctx.sid, id, document)}" />
            <div class="actions">
              <button type="submit">Save as version ${report.candidateVersion}</button>
            </div>
          </form>
        </section>`
      : html``;
    return this.console.page(
      ctx.frame('policies'),
      status,
      `Policy ${id || '(new)'}: dry run`,
      html`${errorSummary(errors, [], labels)}${result}
        <h2>Edit</h2>
        ${this.editForm(ctx, values, errors, !id || Boolean(errors.id))}
        <p>
          <a href="${ctx.u(report?.currentVersion ? `/policies/${enc(id)}` : '/policies')}"
            >Back without saving</a
          >
        </p>`,
      notice,
    );
  }

  /** POST /console/policies/save — only the exact document this session dry-ran. */
  async save(ctx: PageContext): Promise<ConsoleAnswer> {
    const id = text(ctx.req.body, 'id');
    const document = documentOf(ctx.req.body);
    if (!checkReview(ctx.keys, ctx.sid, id, document, ctx.req.body.reviewed)) {
      const again = await this.dryRun(ctx, {
        kind: 'warning',
        text: 'Nothing was saved: review the dry run of this exact document first, then save.',
      });
      return { ...again, status: again.status === 200 ? 409 : again.status };
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(document);
    } catch {
      return this.dryRun(ctx);
    }
    const answer = await ctx.api.call('PUT', `/compliance/policies/${enc(id)}`, parsed);
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status === 201 || answer.status === 200)
      return { status: 303, location: ctx.u(`/policies/${enc(id)}?done=saved`) };
    const fieldErrors = (answer.body?.errors ?? []) as { field: string; message: string }[];
    return this.dryRunPage(
      ctx,
      { id, document },
      {
        document: fieldErrors.length
          ? fieldErrors.map((e) => `${e.field}: ${e.message}`)
          : [String(answer.body?.error_description ?? 'the document was refused')],
      },
      undefined,
      answer.status,
    );
  }

  // ---- data subjects

  async subjects(ctx: PageContext): Promise<ConsoleAnswer> {
    const sub = (ctx.req.query.get('sub') ?? '').trim();
    const lookup = html`<form method="get" action="${ctx.u('/subjects')}" role="search">
      ${input({ name: 'sub', label: 'Subject identifier (sub)', type: 'search', required: true, hint: 'The pseudonymous sub from a token or a request.' }, { sub }, {})}
      <div class="actions"><button type="submit">Look up</button></div>
    </form>`;
    const done = ctx.req.query.get('done') === 'erased';
    if (!sub)
      return this.console.page(
        ctx.frame('subjects'),
        200,
        'Data subjects',
        html`<p>
            Answer a data-subject request at the subject’s home region: export everything held about them
            here, or erase it.
          </p>
          ${lookup}`,
        done ? { kind: 'success', text: 'The subject was erased.' } : undefined,
      );
    const answer = await ctx.api.call('GET', `/privacy/subjects/${enc(sub)}`);
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status !== 200) return this.subjectNotHere(ctx, sub, answer.body, lookup);
    const data = answer.body as {
      region: string;
      subject: Record<string, unknown>;
      linkedIdentities: unknown[];
      sessions: unknown[];
      grants: unknown[];
      tokens: unknown[];
      audit: { at: string; action: string; actor: string; outcome: string }[];
    };
    const s = data.subject;
    const profile = (s.profile ?? {}) as Record<string, unknown>;
    return this.console.page(
      ctx.frame('subjects'),
      200,
      'Data subject',
      html`${lookup}
        <h2>Held in region ${data.region}</h2>
        ${definitionList([
          ['Subject', html`<code id="subject-sub">${String(s.sub)}</code>`],
          ['Residency', s.residency],
          ['Federation', s.federation],
          ['Profile stored', s.storeProfile ? 'yes' : 'no (pseudonymous link only)'],
          ['Last sign-in', s.lastLoginAt],
          ['Linked identities', data.linkedIdentities.length],
          ['Sessions', data.sessions.length],
          ['Grants', data.grants.length],
          ['Tokens', data.tokens.length],
          ['Audit entries', data.audit.length],
        ])}
        <h3>Profile</h3>
        ${Object.keys(profile).length ? definitionList(Object.entries(profile)) : html`<p>No profile is stored.</p>`}
        <div class="actions">
          <a class="button" href="${ctx.u(`/subjects/export?sub=${enc(sub)}`)}" download
            >Download the export (JSON)</a
          >
          <a class="button secondary" href="${ctx.u(`/subjects/erase?sub=${enc(sub)}`)}"
            >Erase this subject…</a
          >
        </div>
        <details>
          <summary>Everything in the export</summary>
          <pre>${pretty(data)}</pre>
        </details>`,
      { kind: 'info', text: 'This lookup is an export: it is recorded in the audit trail.' },
    );
  }

  private subjectNotHere(ctx: PageContext, sub: string, body: unknown, lookup: Html): ConsoleAnswer {
    const home = (body as { home_region?: string } | undefined)?.home_region;
    return this.console.page(ctx.frame('subjects'), 404, 'Data subjects', lookup, {
      kind: 'warning',
      text: home
        ? html`This subject is not held in region ${this.console.deps.region}: their home region is
            <strong>${home}</strong>. Use the console of region ${home}.`
        : html`No subject <code>${sub.slice(0, 80)}</code> is held in region ${this.console.deps.region}.`,
    });
  }

  /** GET /console/subjects/export?sub= — the API's export, as a file. */
  async exportSubject(ctx: PageContext): Promise<ConsoleAnswer> {
    const sub = (ctx.req.query.get('sub') ?? '').trim();
    if (!sub) return { status: 303, location: ctx.u('/subjects') };
    const answer = await ctx.api.call('GET', `/privacy/subjects/${enc(sub)}`);
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status !== 200) return this.subjectNotHere(ctx, sub, answer.body, html``);
    const safe = sub.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 80);
    return {
      status: 200,
      download: {
        filename: `meridian-subject-${this.console.deps.region}-${safe}.json`,
        contentType: 'application/json; charset=utf-8',
        body: `${pretty(answer.body)}\n`,
      },
    };
  }

  /** GET /console/subjects/erase?sub= — what erasure does, and a confirmation. */
  eraseConfirm(ctx: PageContext, values?: FormValues, errors: FieldErrors = {}, status = 200): ConsoleAnswer {
    const sub = String(values?.sub ?? ctx.req.query.get('sub') ?? '').trim();
    if (!sub) return { status: 303, location: ctx.u('/subjects') };
    return this.console.page(
      ctx.frame('subjects'),
      status,
      'Erase a data subject',
      html`${errorSummary(errors, [], { confirm: 'Confirmation' })}
        <div class="notice warning">
          <p>
            Erasure cannot be undone. At this region the profile and linked identities are deleted, sessions,
            grants and tokens are revoked, and audit entries about the subject are pseudonymised; the other
            regions are told to erase their copies.
          </p>
        </div>
        ${definitionList([['Subject', html`<code>${sub}</code>`]])}
        <form method="post" action="${ctx.u('/subjects/erase')}" novalidate>
          ${csrfField(ctx.csrf)}<input type="hidden" name="sub" value="${sub}" />
          ${input({ name: 'confirm', label: 'Type the subject identifier to confirm', required: true, autocomplete: 'off' }, values ?? {}, errors)}
          <div class="actions">
            <button type="submit" class="danger">Erase permanently</button
            ><a href="${ctx.u(`/subjects?sub=${enc(sub)}`)}">Cancel</a>
          </div>
        </form>`,
    );
  }

  async erase(ctx: PageContext): Promise<ConsoleAnswer> {
    const sub = text(ctx.req.body, 'sub');
    const confirm = text(ctx.req.body, 'confirm');
    if (!sub) return { status: 303, location: ctx.u('/subjects') };
    if (confirm !== sub)
      return this.eraseConfirm(
        ctx,
        { sub, confirm },
        { confirm: ['does not match the subject identifier; nothing was erased'] },
        400,
      );
    const answer = await ctx.api.call('DELETE', `/privacy/subjects/${enc(sub)}`);
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status !== 200) return this.subjectNotHere(ctx, sub, answer.body, html``);
    return this.console.page(
      ctx.frame('subjects'),
      200,
      'Subject erased',
      html`<p>
          Subject <code>${sub}</code> was erased at region
          ${String(answer.body?.region ?? this.console.deps.region)}; the other regions were notified.
        </p>
        <p>
          The audit trail now names the subject only by a pseudonym.
          <a href="${ctx.u('/audit?type=subject.erase')}">See the erasures in the audit trail</a> ·
          <a href="${ctx.u('/subjects')}">Look up another subject</a>
        </p>`,
      { kind: 'success', text: 'Erased.' },
    );
  }

  // ---- audit

  async audit(ctx: PageContext): Promise<ConsoleAnswer> {
    const q = ctx.req.query;
    const values: FormValues = {
      subject: (q.get('subject') ?? '').trim(),
      type: (q.get('type') ?? '').trim(),
      since: (q.get('since') ?? '').trim(),
      until: (q.get('until') ?? '').trim(),
    };
    const errors: FieldErrors = {};
    const params = new URLSearchParams({ limit: '200' });
    if (values.subject) params.set('subject', values.subject as string);
    if (values.type) params.set('type', values.type as string);
    for (const key of ['since', 'until'] as const) {
      const raw = values[key] as string;
      if (!raw) continue;
      const iso = utcDateTime(raw);
      if (iso) params.set(key, iso);
      else (errors[key] ??= []).push('is not a date and time');
    }
    const form = html`<form method="get" action="${ctx.u('/audit')}" class="filters">
      ${input({ name: 'subject', label: 'Subject (target)', hint: 'A sub, client id, federation id… exactly.' }, values, errors)}
      ${input({ name: 'type', label: 'Type', hint: 'e.g. subject.export, policy.put, federation.put, admin.scope.granted' }, values, errors)}
      ${input({ name: 'since', label: 'From (UTC)', type: 'datetime-local' }, values, errors)}
      ${input({ name: 'until', label: 'Until (UTC)', type: 'datetime-local' }, values, errors)}
      <div class="actions"><button type="submit">Filter</button><a href="${ctx.u('/audit')}">Clear</a></div>
    </form>`;
    if (Object.keys(errors).length)
      return this.console.page(ctx.frame('audit'), 400, 'Audit trail', html`${errorSummary(errors)}${form}`);
    const answer = await ctx.api.call('GET', `/audit/events?${params.toString()}`);
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status !== 200)
      return this.console.page(ctx.frame('audit'), answer.status, 'Audit trail', form, {
        kind: 'error',
        text: String(answer.body?.error_description ?? 'the audit trail could not be read'),
      });
    const events = (answer.body.events ?? []) as {
      id: string;
      at: string;
      actor: string;
      action: string;
      target_type: string;
      target_id: string | null;
      outcome: string;
      detail: unknown;
    }[];
    return this.console.page(
      ctx.frame('audit'),
      200,
      'Audit trail',
      html`${form}
        <table id="audit-events">
          <caption>
            ${events.length} event${events.length === 1 ? '' : 's'} in region ${String(answer.body.region)},
            newest first${events.length === 200 ? ' (the latest 200)' : ''}
          </caption>
          <thead>
            <tr>
              <th scope="col">Time (UTC)</th>
              <th scope="col">Type</th>
              <th scope="col">Actor</th>
              <th scope="col">Target</th>
              <th scope="col">Outcome</th>
              <th scope="col">Detail</th>
            </tr>
          </thead>
          <tbody>
            ${events.map(
              (e) =>
                html`<tr>
                  <td>${new Date(e.at).toISOString()}</td>
                  <th scope="row">${e.action}</th>
                  <td><code>${e.actor}</code></td>
                  <td>${e.target_type}${e.target_id ? html` <code>${e.target_id}</code>` : ''}</td>
                  <td>${e.outcome}</td>
                  <td>
                    ${e.detail && Object.keys(e.detail as object).length ? html`<code>${JSON.stringify(e.detail).slice(0, 300)}</code>` : '—'}
                  </td>
                </tr>`,
            )}
          </tbody>
        </table>`,
    );
  }
}
