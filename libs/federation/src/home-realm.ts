import type { FederationConfig } from './federation.types';

/**
 * Email home-realm discovery: the domain picks a federation. Nothing is looked up about the
 * person, so the answer reveals nothing about whether an account exists.
 */
export function federationForEmail(
  email: string,
  federations: FederationConfig[],
): FederationConfig | undefined {
  const at = email.lastIndexOf('@');
  if (at < 1 || at === email.length - 1) return undefined;
  const domain = email
    .slice(at + 1)
    .trim()
    .toLowerCase()
    .replace(/\.$/, '');
  const enabled = federations.filter((f) => f.enabled);
  // The most specific configured domain wins (mail.example.de before example.de).
  let best: { fed: FederationConfig; length: number } | undefined;
  for (const fed of enabled) {
    for (const d of fed.homeRealm?.emailDomains ?? []) {
      const rule = d.toLowerCase();
      if ((domain === rule || domain.endsWith(`.${rule}`)) && (!best || rule.length > best.length)) {
        best = { fed, length: rule.length };
      }
    }
  }
  if (best) return best.fed;
  // Then the country rule: a country-code top-level domain (example.de → DE; .uk is GB) picks
  // the one enabled federation whose homeRealm.countries lists it. Two candidates: no guess.
  const tld = domain.slice(domain.lastIndexOf('.') + 1).toUpperCase();
  if (!/^[A-Z]{2}$/.test(tld)) return undefined;
  const country = tld === 'UK' ? 'GB' : tld;
  const byCountry = enabled.filter((f) => f.homeRealm?.countries?.includes(country));
  return byCountry.length === 1 ? byCountry[0] : undefined;
}
