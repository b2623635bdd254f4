import { describe, expect, it } from 'vitest';
import type { FederationConfig } from './federation.types';
import { federationForEmail } from './home-realm';

const fed = (id: string, homeRealm: FederationConfig['homeRealm'], enabled = true): FederationConfig => ({
  id,
  displayName: id,
  issuer: `https://${id}.example`,
  clientId: 'c',
  scopes: ['openid'],
  kind: 'national',
  jurisdiction: 'DE',
  homeRealm,
  enabled,
  storeProfile: true,
  tokenEndpointAuthMethod: 'client_secret_basic',
  useUserinfo: false,
});

const feds = [
  fed('de-eid', { emailDomains: ['bund.de'], countries: ['DE'] }),
  fed('fr-id', { countries: ['FR'] }),
  fed('uk-id', { countries: ['GB'] }),
  fed('uni', { emailDomains: ['uni.example.de'] }),
  fed('off', { emailDomains: ['off.example'], countries: ['IT'] }, false),
  fed('it-a', { countries: ['AT'] }),
  fed('it-b', { countries: ['AT'] }),
];

describe('email home-realm discovery', () => {
  it.each([
    ['anna@bund.de', 'de-eid'],
    ['anna@mail.bund.de', 'de-eid'],
    ['anna@uni.example.de', 'uni'],
    ['anna@sub.uni.example.de', 'uni'],
    ['anna@example.de', 'de-eid'],
    ['jean@exemple.fr', 'fr-id'],
    ['sam@example.co.uk', 'uk-id'],
    ['ANNA@BUND.DE', 'de-eid'],
  ])(
    'routes %s to %s (domain rules first, the most specific wins; then the country-code domain)',
    (email, id) => {
      expect(federationForEmail(email, feds)?.id).toBe(id);
    },
  );

  it.each([
    ['x@off.example', 'a disabled federation'],
    ['x@example.it', 'a disabled federation’s country'],
    ['x@example.at', 'two federations for one country (no guess)'],
    ['x@example.com', 'a generic top-level domain'],
    ['not-an-email', 'no @'],
    ['x@', 'no domain'],
  ])('finds nothing for %s (%s)', (email) => {
    expect(federationForEmail(email, feds)).toBeUndefined();
  });
});
