import { describe, expect, it } from 'vitest';
import {
  FEDERATION_FIELDS,
  clientBody,
  federationBody,
  federationBodyFromView,
  federationForm,
  placeErrors,
  utcDateTime,
} from './forms';
import { html } from './html';

describe('placeErrors: the API’s messages next to the field they name', () => {
  it('strips a leading field name, keeps phrases whole, and keeps the rest general', () => {
    const { errors, general } = placeErrors(
      'issuer must be an http(s) URL; homeRealm.countries must be ISO 3166-1 alpha-2 codes; claimMapping.email: must name a claim; property foo should not exist; something else',
      { ...FEDERATION_FIELDS, 'the discovery document': 'issuer', foo: 'foo' },
    );
    expect(errors).toEqual({
      issuer: ['must be an http(s) URL'],
      countries: ['must be ISO 3166-1 alpha-2 codes'],
      claimMapping: ['email: must name a claim'],
      foo: ['is not allowed'],
    });
    expect(general).toEqual(['something else']);
  });

  it('a discovery failure (422) goes to the issuer, whole', () => {
    const message = 'the discovery document of http://127.0.0.1:9 could not be used: connection refused';
    expect(placeErrors(message, { ...FEDERATION_FIELDS, 'the discovery document': 'issuer' }).errors).toEqual(
      {
        issuer: [message],
      },
    );
  });

  it('needs a word boundary: clientIdX is not clientId', () => {
    expect(placeErrors('clientIdX is odd', FEDERATION_FIELDS).general).toEqual(['clientIdX is odd']);
  });
});

describe('federation form ⇄ API body', () => {
  it('builds the PUT body: words split, empty fields left out, the secret only when typed', () => {
    const { id, body, errors } = federationBody({
      id: 'nordic-id',
      displayName: 'Nordic ID',
      issuer: 'https://id.nordic.example',
      clientId: 'meridian-eu',
      clientSecret: '',
      kind: 'national',
      jurisdiction: 'fr',
      scopes: 'openid, email  profile',
      emailDomains: 'example.fr\nexample.be',
      countries: '',
      claimMapping: '',
      enabled: 'true',
      storeProfile: 'true',
      tokenEndpointAuthMethod: 'client_secret_basic',
    });
    expect(errors).toEqual({});
    expect(id).toBe('nordic-id');
    expect(body).toEqual({
      displayName: 'Nordic ID',
      issuer: 'https://id.nordic.example',
      clientId: 'meridian-eu',
      kind: 'national',
      jurisdiction: 'FR',
      scopes: ['openid', 'email', 'profile'],
      homeRealm: { emailDomains: ['example.fr', 'example.be'] },
      enabled: true,
      storeProfile: true,
      useUserinfo: false,
      tokenEndpointAuthMethod: 'client_secret_basic',
    });
  });

  it('an unchecked box is false; malformed claim-mapping JSON is an error on that field', () => {
    const { body, errors } = federationBody({ id: 'x', claimMapping: '{"email":', kind: 'global' });
    expect(body.enabled).toBe(false);
    expect(errors.claimMapping?.[0]).toMatch(/not valid JSON/);
  });

  it('the API’s view round-trips through the form, and a toggle body keeps only DTO members', () => {
    const view = {
      id: 'de-eid',
      displayName: 'German eID',
      issuer: 'https://id.bund.example',
      clientId: 'meridian-eu',
      scopes: ['openid', 'email'],
      kind: 'national',
      jurisdiction: 'DE',
      homeRealm: { emailDomains: ['example.de'] },
      enabled: true,
      storeProfile: true,
      tokenEndpointAuthMethod: 'client_secret_basic',
      useUserinfo: false,
      hasClientSecret: true,
      redirectUri: 'https://eu.example/federation/callback',
      postLogoutRedirectUri: 'https://eu.example/federation/logged-out',
    };
    const { body } = federationBody(federationForm(view) as Record<string, unknown>);
    const { hasClientSecret: _h, redirectUri: _r, postLogoutRedirectUri: _p, id: _i, ...dto } = view;
    expect(body).toEqual(dto);
    expect(federationBodyFromView(view)).toEqual(dto);
  });
});

describe('client form → API body', () => {
  it('response_types follow the grant types; registered keys are kept on update', () => {
    const { body } = clientBody(
      {
        client_id: 'svc',
        grant_types: 'client_credentials',
        token_endpoint_auth_method: 'private_key_jwt',
        redirect_uris: '',
        resources: 'https://a.example\r\nhttps://b.example',
      },
      { jwks: { keys: [{ kty: 'EC' }] } },
    );
    expect(body).toMatchObject({
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      resources: ['https://a.example', 'https://b.example'],
      jwks: { keys: [{ kty: 'EC' }] },
    });
    expect(body.client_secret).toBeUndefined();
  });

  it('at least one grant type', () => {
    expect(clientBody({ client_id: 'svc' }).errors.grant_types).toEqual(['choose at least one']);
  });
});

describe('utcDateTime', () => {
  it('reads a datetime-local value as UTC', () => {
    expect(utcDateTime('2026-11-29T10:45')).toBe('2026-11-29T10:45:00.000Z');
    expect(utcDateTime('not a date')).toBeUndefined();
    expect(utcDateTime('')).toBeUndefined();
  });
});

describe('html', () => {
  it('escapes every interpolated value, not nested html', () => {
    const name = '<script>alert(1)</script>"';
    expect(html`<p title="${name}">${name}${html`<b>ok</b>`}</p>`.value).toBe(
      '<p title="&#60;script&#62;alert(1)&#60;/script&#62;&#34;">&#60;script&#62;alert(1)&#60;/script&#62;&#34;<b>ok</b></p>',
    );
  });
});
