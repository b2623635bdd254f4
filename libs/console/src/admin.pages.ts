/**
 * Pages for admins (scope `meridian:admin`): regions and their health, federations, clients,
 * resources, keys. Each page is a few API calls and a rendering; the API decides what is allowed.
 */
import { FEDERATION_CALLBACK_PATH, FEDERATION_LOGGED_OUT_PATH } from '@meridian/federation';
import { ConsoleApi, type ApiAnswer } from './api';
import type { ConsoleAnswer, ConsoleService, PageContext } from './console.service';
import {
  CLIENT_FIELDS,
  CLIENT_GRANT_TYPES,
  CLIENT_LABELS,
  FEDERATION_FIELDS,
  FEDERATION_LABELS,
  RESOURCE_FIELDS,
  RESOURCE_LABELS,
  clientBody,
  clientForm,
  federationBody,
  federationBodyFromView,
  federationForm,
  placeErrors,
  resourceBody,
  resourceForm,
  text,
  type RawForm,
} from './forms';
import {
  checkbox,
  checkboxGroup,
  csrfField,
  definitionList,
  display,
  errorSummary,
  html,
  input,
  select,
  textarea,
  type FieldErrors,
  type FormValues,
  type Html,
  type Notice,
  type Section,
} from './views';

const enc = encodeURIComponent;

/** The API's answer when it is not a success: a 403 page, or undefined to let the page handle it. */
export function refusal(
  console: ConsoleService,
  ctx: PageContext,
  answer: ApiAnswer,
): ConsoleAnswer | undefined {
  if (answer.status !== 403) return undefined;
  const needs = /needs scope (\S+)/.exec(String(answer.body?.error_description ?? ''))?.[1];
  return console.page(
    ctx.frame(),
    403,
    'Not allowed',
    html`<p>
        Your sign-in does not carry the role this page needs${needs ? html` (<code>${needs}</code>)` : ''}.
      </p>
      <p>
        Roles are granted by this broker’s configuration (<code>MERIDIAN_CONSOLE_ROLES</code>) when you sign
        in; ask the people who operate it. You hold:
        ${ctx.session.scopes.length ? ctx.session.scopes.join(', ') : 'no console role'}.
      </p>`,
  );
}

function notFound(console: ConsoleService, ctx: PageContext, section: Section, what: string): ConsoleAnswer {
  return console.page(
    ctx.frame(section),
    404,
    'Not found',
    html`<p>${what} does not exist in this region.</p>`,
  );
}

function done(ctx: PageContext, messages: Record<string, (id: string) => string>): Notice | undefined {
  const code = ctx.req.query.get('done');
  const id = ctx.req.query.get('id') ?? '';
  const message = code ? messages[code] : undefined;
  return message ? { kind: 'success', text: message(id) } : undefined;
}

function statusBadge(ok: boolean, on: string, off: string, bad = false): Html {
  return html`<span class="status ${ok ? 'ok' : bad ? 'bad' : 'off'}">${ok ? on : off}</span>`;
}

export class AdminPages {
  constructor(private readonly console: ConsoleService) {}

  private get region() {
    return this.console.deps.region;
  }

  // ---- overview

  async home(ctx: PageContext): Promise<ConsoleAnswer> {
    const scopes = ctx.session.scopes;
    if (!scopes.length)
      return this.console.page(
        ctx.frame('home'),
        403,
        'No console role',
        html`<p>
            You are signed in, but you hold neither <code>meridian:admin</code> nor
            <code>meridian:compliance</code> at this broker, so the admin and compliance API refuses your
            requests.
          </p>
          <p>
            Roles come from this broker’s configuration (<code>MERIDIAN_CONSOLE_ROLES</code>: your subject
            identifier, a verified email address, or a group from your identity provider). Ask the people who
            operate it, then sign in again.
          </p>`,
      );
    const cards: [string, string, string][] = [];
    if (scopes.includes('meridian:admin'))
      cards.push(
        ['regions', 'Regions', 'The regional brokers and whether they are ready.'],
        ['federations', 'Federations', 'Upstream identity providers: onboard, enable, disable.'],
        ['clients', 'Clients', 'Applications and services that get tokens.'],
        ['resources', 'Resources', 'Services that accept tokens (audiences).'],
        ['keys', 'Keys', 'This region’s signing keys and their rotation.'],
      );
    if (scopes.includes('meridian:compliance'))
      cards.push(
        ['policies', 'Residency policies', 'Where people’s data lives; versions, dry runs.'],
        ['subjects', 'Data subjects', 'Export and erasure requests.'],
        ['audit', 'Audit trail', 'Who did what, when.'],
      );
    return this.console.page(
      ctx.frame('home'),
      200,
      'Overview',
      html`<p>Region <strong>${this.region}</strong>. You hold ${scopes.join(' and ')}.</p>
        <ul class="cards">
          ${cards.map(
            ([id, title, text]) =>
              html`<li>
                <h2><a href="${ctx.u(`/${id}`)}">${title}</a></h2>
                <p>${text}</p>
              </li>`,
          )}
        </ul>`,
    );
  }

  // ---- regions

  async regions(ctx: PageContext): Promise<ConsoleAnswer> {
    const answer = await ctx.api.call('GET', '/admin/regions');
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    const regions = answer.body as { id: string; issuer: string; jurisdiction: string | null }[];
    const timeout = Math.min(this.console.deps.timeoutMs, 3000);
    const health = await Promise.all(
      regions.map((r) =>
        ConsoleApi.probe(
          r.id === this.region ? `${this.console.deps.apiBase()}/readyz` : `${r.issuer}/readyz`,
          timeout,
        ),
      ),
    );
    const rows = regions.map((r, i) => {
      const h = health[i]!;
      const down = Object.keys((h.body as { error?: Record<string, unknown> } | undefined)?.error ?? {});
      const state =
        h.status === 200
          ? statusBadge(true, 'Ready', '')
          : h.status
            ? html`${statusBadge(false, '', 'Not ready', true)}
              ${down.length ? html`<span>${down.join(', ')}</span>` : html`HTTP ${h.status}`}`
            : html`${statusBadge(false, '', 'Unreachable', true)} <span>${h.error}</span>`;
      return html`<tr>
        <th scope="row">
          ${r.id}${r.id === this.region ? html` <span class="status off">this broker</span>` : ''}
        </th>
        <td><a href="${r.issuer}">${r.issuer}</a></td>
        <td>${r.jurisdiction ?? '—'}</td>
        <td>${state}</td>
        <td>${h.ms} ms</td>
      </tr>`;
    });
    return this.console.page(
      ctx.frame('regions'),
      200,
      'Regions',
      html`<p>
          Every region’s broker, as registered in the control plane, and its readiness (<code>/readyz</code>:
          both of its databases answer) checked just now.
        </p>
        <table>
          <caption>
            Regions and their health
          </caption>
          <thead>
            <tr>
              <th scope="col">Region</th>
              <th scope="col">Issuer</th>
              <th scope="col">Jurisdiction</th>
              <th scope="col">Health</th>
              <th scope="col">Answer time</th>
            </tr>
          </thead>
          <tbody>
            ${rows}
          </tbody>
        </table>`,
    );
  }

  // ---- federations

  async federations(ctx: PageContext, notice?: Notice, status = 200): Promise<ConsoleAnswer> {
    const answer = await ctx.api.call('GET', '/admin/federations');
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    const list = answer.body as Record<string, unknown>[];
    const rows = list.map(
      (f) =>
        html`<tr>
          <th scope="row">
            <a href="${ctx.u(`/federations/${enc(String(f.id))}`)}">${String(f.displayName)}</a>
          </th>
          <td><code>${String(f.id)}</code></td>
          <td>${String(f.kind)}</td>
          <td>${display(f.jurisdiction)}</td>
          <td>${String(f.issuer)}</td>
          <td>${statusBadge(f.enabled === true, 'Enabled', 'Disabled')}</td>
          <td>
            <form method="post" action="${ctx.u(`/federations/${enc(String(f.id))}/enabled`)}">
              ${csrfField(ctx.csrf)}
              <input type="hidden" name="enabled" value="${f.enabled === true ? 'false' : 'true'}" />
              <button type="submit" class="secondary">
                ${f.enabled === true ? 'Disable' : 'Enable'}<span class="visually-hidden">
                  ${String(f.displayName)}</span
                >
              </button>
            </form>
          </td>
        </tr>`,
    );
    return this.console.page(
      ctx.frame('federations'),
      status,
      'Federations',
      html`<p>Upstream identity providers people sign in with at this region.</p>
        <p class="actions"><a class="button" href="${ctx.u('/federations/new')}">Onboard a federation</a></p>
        ${
          list.length
            ? html`<table>
                <caption>
                  Federations of region ${this.region}
                </caption>
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Id</th>
                    <th scope="col">Kind</th>
                    <th scope="col">Jurisdiction</th>
                    <th scope="col">Issuer</th>
                    <th scope="col">Status</th>
                    <th scope="col">Action</th>
                  </tr>
                </thead>
                <tbody>
                  ${rows}
                </tbody>
              </table>`
            : html`<p>No federation yet.</p>`
        }`,
      notice ??
        done(ctx, {
          enabled: (id) => `Federation ${id} enabled.`,
          disabled: (id) => `Federation ${id} disabled: nobody can sign in through it.`,
        }),
    );
  }

  private federationFields(
    ctx: PageContext,
    values: FormValues,
    errors: FieldErrors,
    isNew: boolean,
    hasSecret: boolean,
  ): Html {
    const L = FEDERATION_LABELS;
    return html`${
      isNew
        ? input(
            {
              name: 'id',
              label: L.id!,
              required: true,
              hint: 'Letters, digits, . _ ~ -; used in idp_hint and URLs. Cannot be changed later.',
            },
            values,
            errors,
          )
        : html`<input type="hidden" name="id" value="${String(values.id ?? '')}" />`
    }
    ${input({ name: 'displayName', label: L.displayName!, required: true, hint: 'What people see on the sign-in page.' }, values, errors)}
    ${input({ name: 'issuer', label: L.issuer!, type: 'url', required: true, hint: 'The identity provider’s issuer; its discovery document is fetched and checked when you save.' }, values, errors)}
    ${select(
      {
        name: 'kind',
        label: L.kind!,
        options: [
          { value: 'national', label: 'National (one jurisdiction)' },
          { value: 'regional', label: 'Regional (one jurisdiction)' },
          { value: 'global', label: 'Global (jurisdiction from the person’s country claim)' },
        ],
      },
      values,
      errors,
    )}
    ${input({ name: 'jurisdiction', label: L.jurisdiction!, hint: 'ISO 3166-1 alpha-2 or EU; national and regional federations only. A residency policy must cover it.' }, values, errors)}
    ${input({ name: 'clientId', label: L.clientId!, required: true, hint: 'This region’s client at the identity provider.' }, values, errors)}
    ${input({ name: 'clientSecret', label: L.clientSecret!, type: 'password', autocomplete: 'off', hint: hasSecret ? 'A secret is stored (sealed). Leave empty to keep it.' : 'Sealed under this region’s key; never shown again. Not needed for private_key_jwt.' }, values, errors)}
    ${select(
      {
        name: 'tokenEndpointAuthMethod',
        label: L.tokenEndpointAuthMethod!,
        options: [
          { value: 'client_secret_basic', label: 'client_secret_basic' },
          { value: 'client_secret_post', label: 'client_secret_post' },
          { value: 'private_key_jwt', label: 'private_key_jwt (signed with this region’s key)' },
        ],
      },
      values,
      errors,
    )}
    ${input({ name: 'scopes', label: L.scopes!, hint: 'Space-separated; default: openid email profile.' }, values, errors)}
    ${input({ name: 'emailDomains', label: L.emailDomains!, hint: 'Space-separated domains whose people are sent to this provider.' }, values, errors)}
    ${input({ name: 'countries', label: L.countries!, hint: 'Space-separated country codes for home-realm discovery by country domain.' }, values, errors)}
    ${textarea({ name: 'claimMapping', label: L.claimMapping!, code: true, rows: 4, hint: 'Optional JSON object: Meridian claim → the provider’s claim, e.g. {"email": "mail"}.' }, values, errors)}
    ${checkbox({ name: 'enabled', label: 'Enabled: people can sign in through it' }, values, errors)}
    ${checkbox({ name: 'storeProfile', label: 'Store the profile (off: only a pseudonymous link is kept)' }, values, errors)}
    ${checkbox({ name: 'useUserinfo', label: 'Also call the userinfo endpoint' }, values, errors)}
    ${csrfField(ctx.csrf)}`;
  }

  private redirectInfo(ctx: PageContext, redirectUri: string, postLogout: string): Html {
    return html`<div class="notice info">
      <p>Register this redirect URI for this region’s client at the identity provider:</p>
      <code class="copy" id="redirect-uri">${redirectUri}</code>
      <p>
        For sign-out chained to the provider, also its post-logout redirect URI:
        <code class="copy">${postLogout}</code>
      </p>
    </div>`;
  }

  newFederation(
    ctx: PageContext,
    values: FormValues = {
      kind: 'national',
      scopes: 'openid email profile',
      enabled: true,
      storeProfile: true,
      tokenEndpointAuthMethod: 'client_secret_basic',
    },
    errors: FieldErrors = {},
    general: string[] = [],
    status = 200,
  ): ConsoleAnswer {
    const issuer = this.console.deps.issuer;
    return this.console.page(
      ctx.frame('federations'),
      status,
      'Onboard a federation',
      html`${errorSummary(errors, general, FEDERATION_LABELS)}
        ${this.redirectInfo(ctx, `${issuer}${FEDERATION_CALLBACK_PATH}`, `${issuer}${FEDERATION_LOGGED_OUT_PATH}`)}
        <form method="post" action="${ctx.u('/federations')}" novalidate>
          ${this.federationFields(ctx, values, errors, true, false)}
          <div class="actions">
            <button type="submit">Check discovery and save</button
            ><a href="${ctx.u('/federations')}">Cancel</a>
          </div>
        </form>`,
    );
  }

  async createFederation(ctx: PageContext): Promise<ConsoleAnswer> {
    return this.saveFederation(ctx, ctx.req.body, true);
  }

  async updateFederation(ctx: PageContext, id: string): Promise<ConsoleAnswer> {
    return this.saveFederation(ctx, { ...ctx.req.body, id }, false);
  }

  private async saveFederation(ctx: PageContext, form: RawForm, isNew: boolean): Promise<ConsoleAnswer> {
    const { id, values, body, errors } = federationBody(form);
    const again = async (e: FieldErrors, general: string[], status: number) => {
      if (isNew) return this.newFederation(ctx, values, e, general, status);
      return this.federation(ctx, id, { values, errors: e, general, status });
    };
    if (Object.keys(errors).length) return again(errors, [], 400);
    if (isNew) {
      const existing = await ctx.api.call('GET', `/admin/federations/${enc(id)}`);
      const refused = refusal(this.console, ctx, existing);
      if (refused) return refused;
      if (existing.status === 200)
        return again({ id: ['a federation with this id exists already; open it to change it'] }, [], 409);
    }
    const answer = await ctx.api.call('PUT', `/admin/federations/${enc(id)}`, body);
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status === 200 || answer.status === 201)
      return {
        status: 303,
        location: ctx.u(`/federations/${enc(id)}?done=${answer.status === 201 ? 'created' : 'updated'}`),
      };
    const placed = placeErrors(String(answer.body?.error_description ?? 'the federation was refused'), {
      ...FEDERATION_FIELDS,
      // 422: discovery problems are the issuer's; coverage problems the jurisdiction's.
      'the discovery document': 'issuer',
      [values.issuer as string]: 'issuer',
      'No residency policy': 'jurisdiction',
    });
    return again(placed.errors, placed.general, answer.status);
  }

  async federation(
    ctx: PageContext,
    id: string,
    again?: { values: FormValues; errors: FieldErrors; general: string[]; status: number },
  ): Promise<ConsoleAnswer> {
    const answer = await ctx.api.call('GET', `/admin/federations/${enc(id)}`);
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status === 404) return notFound(this.console, ctx, 'federations', `Federation ${id}`);
    const view = answer.body as Record<string, unknown>;
    const values = again?.values ?? federationForm(view);
    const errors = again?.errors ?? {};
    const notice =
      done(ctx, {
        created: () =>
          'Federation onboarded: its discovery document was fetched and checked. Register the redirect URI below at the identity provider.',
        updated: () => 'Federation saved.',
        secret: () =>
          'New secret stored: used from now on; the previous one is tried while the identity provider still refuses the new one.',
        promoted: () => 'The new secret is the only one now.',
      }) ?? undefined;
    return this.console.page(
      ctx.frame('federations'),
      again?.status ?? 200,
      `Federation ${String(view.displayName)}`,
      html`${errorSummary(errors, again?.general ?? [], FEDERATION_LABELS)}
        ${definitionList([
          ['Id', html`<code>${id}</code>`],
          ['Status', statusBadge(view.enabled === true, 'Enabled', 'Disabled')],
          ['Kind', view.kind],
          ['Jurisdiction', view.jurisdiction],
          ['Issuer', view.issuer],
          ['Client id (this region)', view.clientId],
          ['Client secret', view.hasClientSecret ? 'stored (sealed)' : 'none'],
        ])}
        ${this.redirectInfo(ctx, String(view.redirectUri), String(view.postLogoutRedirectUri))}
        ${view.hasClientSecret === true ? await this.federationSecretForms(ctx, id) : ''}
        <h2>Change</h2>
        <form method="post" action="${ctx.u(`/federations/${enc(id)}`)}" novalidate>
          ${this.federationFields(ctx, values, errors, false, view.hasClientSecret === true)}
          <div class="actions">
            <button type="submit">Check discovery and save</button
            ><a href="${ctx.u('/federations')}">Back to federations</a>
          </div>
        </form>`,
      notice,
    );
  }

  private async federationSecretForms(ctx: PageContext, id: string): Promise<Html> {
    const answer = await ctx.api.call('GET', `/admin/federations/${enc(id)}/secret`);
    const state = answer.status === 200 ? (answer.body as Record<string, unknown>) : {};
    const previous = state.previous as Record<string, unknown> | null | undefined;
    return html`<h2>Client secret at the identity provider</h2>
      ${
        previous
          ? html`<p>
                The previous secret is still tried until ${String(previous.expiresAt ?? '')} while the
                identity provider refuses the new one. Once it accepts the new one, drop the previous.
              </p>
              <form method="post" action="${ctx.u(`/federations/${enc(id)}/secret/promote`)}">
                ${csrfField(ctx.csrf)}<button type="submit">Use only the new secret</button>
              </form>`
          : ''
      }
      <form method="post" action="${ctx.u(`/federations/${enc(id)}/secret`)}" novalidate autocomplete="off">
        ${csrfField(ctx.csrf)}
        <label for="fed-secret">New secret the identity provider issued to this region</label>
        <input id="fed-secret" name="clientSecret" type="password" autocomplete="off" />
        <label for="fed-overlap">Keep trying the current secret for (seconds, 0–2592000)</label>
        <input id="fed-overlap" name="overlapSeconds" inputmode="numeric" value="86400" />
        <div class="actions"><button type="submit">Store the new secret</button></div>
      </form>`;
  }

  async setFederationEnabled(ctx: PageContext, id: string): Promise<ConsoleAnswer> {
    const enabled = text(ctx.req.body, 'enabled') === 'true';
    const current = await ctx.api.call('GET', `/admin/federations/${enc(id)}`);
    const refused = refusal(this.console, ctx, current);
    if (refused) return refused;
    if (current.status === 404) return notFound(this.console, ctx, 'federations', `Federation ${id}`);
    const body = { ...federationBodyFromView(current.body as Record<string, unknown>), enabled };
    const answer = await ctx.api.call('PUT', `/admin/federations/${enc(id)}`, body);
    const refusedPut = refusal(this.console, ctx, answer);
    if (refusedPut) return refusedPut;
    if (answer.status === 200 || answer.status === 201)
      return {
        status: 303,
        location: ctx.u(`/federations?done=${enabled ? 'enabled' : 'disabled'}&id=${enc(id)}`),
      };
    return this.federations(
      ctx,
      {
        kind: 'error',
        text: `Federation ${id} could not be ${enabled ? 'enabled' : 'disabled'}: ${String(answer.body?.error_description ?? answer.status)}`,
      },
      answer.status,
    );
  }

  // ---- clients

  async clients(ctx: PageContext): Promise<ConsoleAnswer> {
    const answer = await ctx.api.call('GET', '/admin/clients');
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    const list = answer.body as Record<string, unknown>[];
    return this.console.page(
      ctx.frame('clients'),
      200,
      'Clients',
      html`<p>Applications and services registered in the control plane (every region).</p>
        <p class="actions"><a class="button" href="${ctx.u('/clients/new')}">Register a client</a></p>
        <table>
          <caption>
            Clients
          </caption>
          <thead>
            <tr>
              <th scope="col">Client id</th>
              <th scope="col">Name</th>
              <th scope="col">Grant types</th>
              <th scope="col">Authentication</th>
              <th scope="col">Resources</th>
            </tr>
          </thead>
          <tbody>
            ${list.map(
              (c) =>
                html`<tr>
                  <th scope="row">
                    <a href="${ctx.u(`/clients/${enc(String(c.client_id))}`)}">${String(c.client_id)}</a>
                  </th>
                  <td>${display(c.client_name)}</td>
                  <td>${display(c.grant_types)}</td>
                  <td>${display(c.token_endpoint_auth_method)}</td>
                  <td>${display(c.resources)}</td>
                </tr>`,
            )}
          </tbody>
        </table>`,
      done(ctx, { created: (id) => `Client ${id} registered.`, updated: (id) => `Client ${id} saved.` }),
    );
  }

  private clientFields(ctx: PageContext, values: FormValues, errors: FieldErrors, isNew: boolean): Html {
    const L = CLIENT_LABELS;
    return html`${
      isNew
        ? input({ name: 'client_id', label: L.client_id!, required: true }, values, errors)
        : html`<input type="hidden" name="client_id" value="${String(values.client_id ?? '')}" />`
    }
    ${input({ name: 'client_name', label: L.client_name! }, values, errors)}
    ${checkboxGroup({ name: 'grant_types', label: L.grant_types!, options: CLIENT_GRANT_TYPES }, values, errors)}
    ${select(
      {
        name: 'token_endpoint_auth_method',
        label: L.token_endpoint_auth_method!,
        options: [
          'client_secret_basic',
          'client_secret_post',
          'private_key_jwt',
          'tls_client_auth',
          'self_signed_tls_client_auth',
        ].map((v) => ({ value: v, label: v })),
      },
      values,
      errors,
    )}
    ${input({ name: 'client_secret', label: L.client_secret!, type: 'password', autocomplete: 'new-password', hint: isNew ? 'At least 32 characters; leave empty to have one generated and shown once.' : 'Leave empty to keep the current secret.' }, values, errors)}
    ${textarea({ name: 'redirect_uris', label: L.redirect_uris!, rows: 3, hint: 'One per line: https, loopback http, or a private-use scheme (native apps).' }, values, errors)}
    ${textarea({ name: 'post_logout_redirect_uris', label: L.post_logout_redirect_uris!, rows: 2, hint: 'One per line.' }, values, errors)}
    ${input({ name: 'scope', label: L.scope!, hint: 'Space-separated, e.g. openid offline_access orders:read.' }, values, errors)}
    ${textarea({ name: 'resources', label: L.resources!, rows: 2, hint: 'One audience per line (registered resources).' }, values, errors)}
    ${select(
      {
        name: 'application_type',
        label: 'Application type',
        options: [
          { value: 'web', label: 'web' },
          { value: 'native', label: 'native' },
        ],
      },
      values,
      errors,
    )}
    ${select(
      {
        name: 'subject_type',
        label: L.subject_type!,
        options: [
          { value: 'public', label: 'public' },
          { value: 'pairwise', label: 'pairwise' },
        ],
      },
      values,
      errors,
    )}
    ${checkbox({ name: 'dpop_bound_access_tokens', label: L.dpop_bound_access_tokens! }, values, errors)}
    ${checkbox({ name: 'tls_client_certificate_bound_access_tokens', label: L.tls_client_certificate_bound_access_tokens! }, values, errors)}
    ${input({ name: 'tls_client_auth_subject_dn', label: L.tls_client_auth_subject_dn!, hint: 'For tls_client_auth.' }, values, errors)}
    ${csrfField(ctx.csrf)}`;
  }

  newClient(
    ctx: PageContext,
    values: FormValues = {
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: 'client_secret_basic',
      application_type: 'web',
      subject_type: 'public',
    },
    errors: FieldErrors = {},
    general: string[] = [],
    status = 200,
  ): ConsoleAnswer {
    return this.console.page(
      ctx.frame('clients'),
      status,
      'Register a client',
      html`${errorSummary(errors, general, CLIENT_LABELS)}
        <form method="post" action="${ctx.u('/clients')}" novalidate>
          ${this.clientFields(ctx, values, errors, true)}
          <div class="actions">
            <button type="submit">Register</button><a href="${ctx.u('/clients')}">Cancel</a>
          </div>
        </form>`,
    );
  }

  async client(
    ctx: PageContext,
    id: string,
    again?: { values: FormValues; errors: FieldErrors; general: string[]; status: number },
  ): Promise<ConsoleAnswer> {
    const answer = await ctx.api.call('GET', `/admin/clients/${enc(id)}`);
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status === 404) return notFound(this.console, ctx, 'clients', `Client ${id}`);
    const view = answer.body as Record<string, unknown>;
    const errors = again?.errors ?? {};
    return this.console.page(
      ctx.frame('clients'),
      again?.status ?? 200,
      `Client ${id}`,
      html`${errorSummary(errors, again?.general ?? [], CLIENT_LABELS)}
        ${definitionList([
          ['Client id', html`<code>${id}</code>`],
          ['Secret', view.has_client_secret ? 'stored (hashed)' : 'none'],
          [
            'Previous secret',
            typeof view.previous_client_secret_expires_at === 'number'
              ? `still accepted until ${new Date(view.previous_client_secret_expires_at * 1000).toISOString()}`
              : 'none',
          ],
          ['Registered keys (jwks)', view.jwks ? 'yes (kept on save)' : 'none'],
        ])}
        <form method="post" action="${ctx.u(`/clients/${enc(id)}`)}" novalidate>
          ${this.clientFields(ctx, again?.values ?? clientForm(view), errors, false)}
          <div class="actions">
            <button type="submit">Save</button><a href="${ctx.u('/clients')}">Back to clients</a>
          </div>
        </form>
        ${view.has_client_secret ? this.clientSecretForms(ctx, id, view) : ''}`,
      done(ctx, {
        updated: () => 'Client saved.',
        created: () => 'Client registered.',
        revoked: () => 'The previous secret is refused from now on.',
      }),
    );
  }

  /** Rotation with an overlap (the old secret stays valid for a while), and ending an overlap. */
  private clientSecretForms(ctx: PageContext, id: string, view: Record<string, unknown>): Html {
    const overlapping = typeof view.previous_client_secret_expires_at === 'number';
    return html`<h2>Secret</h2>
      ${
        overlapping
          ? html`<p>
                Two secrets are valid until the previous one expires. End the overlap once every instance of
                the client uses the new secret — or at once, if the previous one leaked.
              </p>
              <form method="post" action="${ctx.u(`/clients/${enc(id)}/secret/previous`)}">
                ${csrfField(ctx.csrf)}<button type="submit" class="danger">
                  Refuse the previous secret now
                </button>
              </form>`
          : html`<p>
                A new secret is generated and shown once; the current one stays valid for the overlap, so the
                client's instances can switch without an outage. An overlap of 0 refuses the current secret at
                once (after a leak).
              </p>
              <form method="post" action="${ctx.u(`/clients/${enc(id)}/secret`)}" novalidate>
                ${csrfField(ctx.csrf)}
                <label for="overlap">Overlap (seconds, 0–2592000)</label>
                <input id="overlap" name="overlapSeconds" inputmode="numeric" value="86400" />
                <div class="actions"><button type="submit">Rotate the secret</button></div>
              </form>`
      }`;
  }

  async rotateClientSecret(ctx: PageContext, id: string): Promise<ConsoleAnswer> {
    const overlap = overlapSeconds(ctx.req.body);
    if (overlap === undefined) return this.secretFailed(ctx, 'clients', id, 400, OVERLAP_ERROR);
    const answer = await ctx.api.call('POST', `/admin/clients/${enc(id)}/secret`, {
      overlapSeconds: overlap,
    });
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status !== 200 && answer.status !== 201)
      return this.secretFailed(ctx, 'clients', id, answer.status, answer.body?.error_description);
    const until = answer.body?.previous_client_secret_expires_at;
    return this.console.page(
      ctx.frame('clients'),
      200,
      `New secret for client ${id}`,
      html`<div class="notice warning" role="status">
          <p>This is the new client secret. It is shown only now: copy it to the client’s configuration.</p>
          <code class="copy" id="client-secret">${String(answer.body?.client_secret ?? '')}</code>
        </div>
        <p>
          ${
            typeof until === 'number'
              ? `The previous secret is accepted until ${new Date(until * 1000).toISOString()}.`
              : 'The previous secret is refused from now on.'
          }
        </p>
        <p><a href="${ctx.u(`/clients/${enc(id)}`)}">Open client ${id}</a></p>`,
    );
  }

  async revokePreviousClientSecret(ctx: PageContext, id: string): Promise<ConsoleAnswer> {
    const answer = await ctx.api.call('DELETE', `/admin/clients/${enc(id)}/secret/previous`);
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status !== 204)
      return this.secretFailed(ctx, 'clients', id, answer.status, answer.body?.error_description);
    return { status: 303, location: ctx.u(`/clients/${enc(id)}?done=revoked&id=${enc(id)}`) };
  }

  /** This region's copy of an upstream secret: the new one from the IdP, the old one tried meanwhile. */
  async rotateFederationSecret(ctx: PageContext, id: string): Promise<ConsoleAnswer> {
    const overlap = overlapSeconds(ctx.req.body);
    const secret = text(ctx.req.body, 'clientSecret');
    if (overlap === undefined) return this.secretFailed(ctx, 'federations', id, 400, OVERLAP_ERROR);
    if (!secret)
      return this.secretFailed(
        ctx,
        'federations',
        id,
        400,
        'enter the new secret the identity provider issued',
      );
    const answer = await ctx.api.call('POST', `/admin/federations/${enc(id)}/secret`, {
      clientSecret: secret,
      overlapSeconds: overlap,
    });
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status !== 200)
      return this.secretFailed(ctx, 'federations', id, answer.status, answer.body?.error_description);
    return { status: 303, location: ctx.u(`/federations/${enc(id)}?done=secret&id=${enc(id)}`) };
  }

  async promoteFederationSecret(ctx: PageContext, id: string): Promise<ConsoleAnswer> {
    const answer = await ctx.api.call('POST', `/admin/federations/${enc(id)}/secret/promote`);
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status !== 200)
      return this.secretFailed(ctx, 'federations', id, answer.status, answer.body?.error_description);
    return { status: 303, location: ctx.u(`/federations/${enc(id)}?done=promoted&id=${enc(id)}`) };
  }

  private secretFailed(
    ctx: PageContext,
    section: 'clients' | 'federations',
    id: string,
    status: number,
    why: unknown,
  ): ConsoleAnswer {
    return this.console.page(
      ctx.frame(section),
      status >= 400 ? status : 502,
      'Secret not changed',
      html`<div class="notice error" role="alert"><p>${String(why ?? 'the change was refused')}</p></div>
        <p><a href="${ctx.u(`/${section}/${enc(id)}`)}">Back</a></p>`,
    );
  }

  async saveClient(ctx: PageContext, pathId?: string): Promise<ConsoleAnswer> {
    const isNew = pathId === undefined;
    let existing: Record<string, unknown> | undefined;
    const form = isNew ? ctx.req.body : { ...ctx.req.body, client_id: pathId };
    const id = text(form, 'client_id');
    if (id) {
      const current = await ctx.api.call('GET', `/admin/clients/${enc(id)}`);
      const refused = refusal(this.console, ctx, current);
      if (refused) return refused;
      if (current.status === 200) existing = current.body as Record<string, unknown>;
    }
    const { values, body, errors } = clientBody(form, existing);
    const again = (e: FieldErrors, general: string[], status: number) =>
      isNew
        ? this.newClient(ctx, values, e, general, status)
        : this.client(ctx, id, { values, errors: e, general, status });
    if (isNew && existing) (errors.client_id ??= []).push('a client with this id exists already');
    if (Object.keys(errors).length) return again(errors, [], isNew && existing ? 409 : 400);
    const answer = await ctx.api.call('PUT', `/admin/clients/${enc(id)}`, body);
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status === 200 || answer.status === 201) {
      const secret = answer.body?.client_secret;
      if (typeof secret === 'string')
        return this.console.page(
          ctx.frame('clients'),
          answer.status,
          `Client ${id} ${answer.status === 201 ? 'registered' : 'saved'}`,
          html`<div class="notice warning" role="status">
              <p>This is the client secret. It is shown only now: copy it to the client’s configuration.</p>
              <code class="copy" id="client-secret">${secret}</code>
            </div>
            <p>
              <a href="${ctx.u(`/clients/${enc(id)}`)}">Open client ${id}</a> ·
              <a href="${ctx.u('/clients')}">Back to clients</a>
            </p>`,
        );
      return {
        status: 303,
        location: ctx.u(`/clients?done=${answer.status === 201 ? 'created' : 'updated'}&id=${enc(id)}`),
      };
    }
    const placed = placeErrors(
      String(answer.body?.error_description ?? 'the client was refused'),
      CLIENT_FIELDS,
    );
    return again(placed.errors, placed.general, answer.status);
  }

  // ---- resources

  async resources(ctx: PageContext): Promise<ConsoleAnswer> {
    const answer = await ctx.api.call('GET', '/admin/resources');
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    const list = answer.body as Record<string, unknown>[];
    return this.console.page(
      ctx.frame('resources'),
      200,
      'Resources',
      html`<p>Services that accept tokens: each is one audience (RFC 8707), with the scopes it knows.</p>
        <p class="actions"><a class="button" href="${ctx.u('/resources/new')}">Register a resource</a></p>
        <table>
          <caption>
            Resources
          </caption>
          <thead>
            <tr>
              <th scope="col">Id</th>
              <th scope="col">Audience</th>
              <th scope="col">Scopes</th>
              <th scope="col">Region</th>
              <th scope="col">Token lifetime</th>
            </tr>
          </thead>
          <tbody>
            ${list.map(
              (r) =>
                html`<tr>
                  <th scope="row">
                    <a href="${ctx.u(`/resources/${enc(String(r.id))}`)}">${String(r.id)}</a>
                  </th>
                  <td>${String(r.audience)}</td>
                  <td>${display(r.scopes)}</td>
                  <td>${String(r.region)}</td>
                  <td>${String(r.accessTokenTtlSeconds)} s</td>
                </tr>`,
            )}
          </tbody>
        </table>`,
      done(ctx, { created: (id) => `Resource ${id} registered.`, updated: (id) => `Resource ${id} saved.` }),
    );
  }

  private async regionOptions(ctx: PageContext): Promise<{ value: string; label: string }[]> {
    const answer = await ctx.api.call('GET', '/admin/regions');
    const ids = answer.status === 200 ? (answer.body as { id: string }[]).map((r) => r.id) : [this.region];
    return ids.map((id) => ({ value: id, label: id }));
  }

  private resourceFields(
    ctx: PageContext,
    values: FormValues,
    errors: FieldErrors,
    isNew: boolean,
    regions: { value: string; label: string }[],
  ): Html {
    const L = RESOURCE_LABELS;
    return html`${
      isNew
        ? input({ name: 'id', label: L.id!, required: true }, values, errors)
        : html`<input type="hidden" name="id" value="${String(values.id ?? '')}" />`
    }
    ${input({ name: 'audience', label: L.audience!, required: true, hint: 'An absolute URI, e.g. https://orders.example.com.' }, values, errors)}
    ${input({ name: 'scopes', label: L.scopes!, required: true, hint: 'Space-separated, e.g. orders:read orders:write.' }, values, errors)}
    ${select({ name: 'region', label: L.region!, options: regions }, values, errors)}
    ${input({ name: 'accessTokenTtlSeconds', label: L.accessTokenTtlSeconds!, type: 'number', inputmode: 'numeric', hint: '1-3600; default 300.' }, values, errors)}
    ${input({ name: 'clientId', label: L.clientId!, hint: 'Only this client may exchange tokens issued for the audience (RFC 8693).' }, values, errors)}
    ${textarea({ name: 'encryptionJwk', label: L.encryptionJwk!, code: true, rows: 3, hint: 'Optional: tokens for this service are then encrypted to this key.' }, values, errors)}
    ${csrfField(ctx.csrf)}`;
  }

  async newResource(
    ctx: PageContext,
    values: FormValues = { region: this.region },
    errors: FieldErrors = {},
    general: string[] = [],
    status = 200,
  ): Promise<ConsoleAnswer> {
    return this.console.page(
      ctx.frame('resources'),
      status,
      'Register a resource',
      html`${errorSummary(errors, general, RESOURCE_LABELS)}
        <form method="post" action="${ctx.u('/resources')}" novalidate>
          ${this.resourceFields(ctx, values, errors, true, await this.regionOptions(ctx))}
          <div class="actions">
            <button type="submit">Register</button><a href="${ctx.u('/resources')}">Cancel</a>
          </div>
        </form>`,
    );
  }

  async resource(
    ctx: PageContext,
    id: string,
    again?: { values: FormValues; errors: FieldErrors; general: string[]; status: number },
  ): Promise<ConsoleAnswer> {
    const answer = await ctx.api.call('GET', `/admin/resources/${enc(id)}`);
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status === 404) return notFound(this.console, ctx, 'resources', `Resource ${id}`);
    const errors = again?.errors ?? {};
    return this.console.page(
      ctx.frame('resources'),
      again?.status ?? 200,
      `Resource ${id}`,
      html`${errorSummary(errors, again?.general ?? [], RESOURCE_LABELS)}
        <form method="post" action="${ctx.u(`/resources/${enc(id)}`)}" novalidate>
          ${this.resourceFields(ctx, again?.values ?? resourceForm(answer.body as Record<string, unknown>), errors, false, await this.regionOptions(ctx))}
          <div class="actions">
            <button type="submit">Save</button><a href="${ctx.u('/resources')}">Back to resources</a>
          </div>
        </form>`,
    );
  }

  async saveResource(ctx: PageContext, pathId?: string): Promise<ConsoleAnswer> {
    const isNew = pathId === undefined;
    const { id, values, body, errors } = resourceBody(isNew ? ctx.req.body : { ...ctx.req.body, id: pathId });
    const again = (e: FieldErrors, general: string[], status: number) =>
      isNew
        ? this.newResource(ctx, values, e, general, status)
        : this.resource(ctx, id, { values, errors: e, general, status });
    if (Object.keys(errors).length) return again(errors, [], 400);
    if (isNew) {
      const existing = await ctx.api.call('GET', `/admin/resources/${enc(id)}`);
      const refused = refusal(this.console, ctx, existing);
      if (refused) return refused;
      if (existing.status === 200) return again({ id: ['a resource with this id exists already'] }, [], 409);
    }
    const answer = await ctx.api.call('PUT', `/admin/resources/${enc(id)}`, body);
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status === 200 || answer.status === 201)
      return {
        status: 303,
        location: ctx.u(`/resources?done=${answer.status === 201 ? 'created' : 'updated'}&id=${enc(id)}`),
      };
    const placed = placeErrors(
      String(answer.body?.error_description ?? 'the resource was refused'),
      RESOURCE_FIELDS,
    );
    return again(placed.errors, placed.general, answer.status);
  }

  // ---- keys

  async keys(ctx: PageContext): Promise<ConsoleAnswer> {
    const answer = await ctx.api.call('GET', '/admin/keys');
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    const keys = answer.body as {
      kid: string;
      alg: string;
      state: string;
      activatedAt?: string | null;
      publishUntil?: string | null;
    }[];
    const describe: Record<string, string> = {
      current: 'signs every token now',
      next: 'published, signs after the next rotation',
      retiring: 'published until the tokens it signed have expired',
    };
    return this.console.page(
      ctx.frame('keys'),
      200,
      'Signing keys',
      html`<p>
          This region’s signing keys. The next key is published before it signs; a retiring key stays
          published until the longest-lived token it signed has expired.
        </p>
        <table>
          <caption>
            Keys of region ${this.region}
          </caption>
          <thead>
            <tr>
              <th scope="col">State</th>
              <th scope="col">Key id</th>
              <th scope="col">Algorithm</th>
              <th scope="col">Activated</th>
              <th scope="col">Published until</th>
            </tr>
          </thead>
          <tbody>
            ${keys.map(
              (k) =>
                html`<tr>
                  <th scope="row">${k.state} <span class="hint">(${describe[k.state] ?? ''})</span></th>
                  <td><code>${k.kid}</code></td>
                  <td>${k.alg}</td>
                  <td>${display(k.activatedAt)}</td>
                  <td>${display(k.publishUntil)}</td>
                </tr>`,
            )}
          </tbody>
        </table>
        <h2>Rotate</h2>
        <p>
          The next key becomes current; the current key retires; a new next key is created. Tokens already
          issued stay valid.
        </p>
        <form method="post" action="${ctx.u('/keys/rotate')}">
          ${csrfField(ctx.csrf)}<button type="submit">Rotate the signing key now</button>
        </form>`,
      done(ctx, { rotated: (kid) => `Rotated: ${kid} is the current key now.` }),
    );
  }

  async rotateKeys(ctx: PageContext): Promise<ConsoleAnswer> {
    const answer = await ctx.api.call('POST', '/admin/keys/rotate');
    const refused = refusal(this.console, ctx, answer);
    if (refused) return refused;
    if (answer.status !== 200)
      return this.console.page(
        ctx.frame('keys'),
        answer.status,
        'Rotation failed',
        html`<p>${String(answer.body?.error_description ?? 'the rotation was refused')}</p>`,
      );
    return { status: 303, location: ctx.u(`/keys?done=rotated&id=${enc(String(answer.body.current))}`) };
  }
}

const OVERLAP_ERROR = 'the overlap must be a whole number of seconds from 0 to 2592000 (30 days)';

/** The overlap field: whole seconds, 0 to 30 days; undefined when it is anything else. */
function overlapSeconds(body: RawForm): number | undefined {
  const raw = text(body, 'overlapSeconds') || '86400';
  if (!/^\d{1,7}$/.test(raw)) return undefined;
  const n = Number(raw);
  return n <= 30 * 86400 ? n : undefined;
}
