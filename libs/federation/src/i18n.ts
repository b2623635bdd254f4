/**
 * The languages of the pages people see, chosen by `Accept-Language` (RFC 9110 §12.5.4), and
 * every string those pages show. Pure: no Nest, no I/O.
 *
 * Machine-readable values (OAuth `error` codes, `error_description`, Meridian's ERR_* codes) are
 * not translated: RFC 6749 §4.1.2.1 limits `error_description` to ASCII for the client's
 * developer, and apps match on it.
 */

export type Lang = 'en' | 'de';

/** The languages served, the fallback first. */
export const LANGS: readonly Lang[] = ['en', 'de'];
export const DEFAULT_LANG: Lang = 'en';

// A header is a handful of entries; anything longer is cut rather than parsed in full.
const MAX_HEADER = 2048;
const MAX_ENTRIES = 32;
// RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/;
// RFC 4647 §2.1 language-range: "*" or 1*8ALPHA *("-" 1*8alphanum)
const RANGE = /^(?:\*|[a-z]{1,8}(?:-[a-z0-9]{1,8})*)$/;

interface Preference {
  range: string;
  q: number;
}

/** The entries of an `Accept-Language` header; malformed entries are dropped, not guessed at. */
export function parseAcceptLanguage(header: string | readonly string[] | undefined): Preference[] {
  const text = (Array.isArray(header) ? header.join(',') : String(header ?? '')).slice(0, MAX_HEADER);
  const out: Preference[] = [];
  for (const entry of text.split(',').slice(0, MAX_ENTRIES)) {
    const [rawRange, ...params] = entry.split(';');
    const range = rawRange.trim().toLowerCase();
    if (!RANGE.test(range)) continue;
    let q = 1;
    let valid = true;
    for (const p of params) {
      const eq = p.indexOf('=');
      const name = (eq === -1 ? p : p.slice(0, eq)).trim().toLowerCase();
      if (name !== 'q') continue;
      const value = eq === -1 ? '' : p.slice(eq + 1).trim();
      if (!QVALUE.test(value)) valid = false;
      else q = Number(value);
    }
    if (valid) out.push({ range, q });
  }
  return out;
}

/**
 * The served language the person prefers most: for each served language the weight of the
 * range naming it exactly, else of the most preferred range it is a prefix of (`de-AT` asks for
 * German: RFC 4647 §3.4 lookup), else of `*`. q=0 means "not this one" (RFC 9110 §12.4.2).
 * Ties go to the range listed first; nothing acceptable falls back to English.
 */
export function negotiateLanguage(header: string | readonly string[] | undefined): Lang {
  const prefs = parseAcceptLanguage(header);
  let best: { lang: Lang; q: number; at: number } | undefined;
  for (const lang of LANGS) {
    let exact: { q: number; at: number } | undefined;
    let prefix: { q: number; at: number } | undefined;
    let wildcard: { q: number; at: number } | undefined;
    for (const [at, { range, q }] of prefs.entries()) {
      if (range === lang) exact ??= { q, at };
      else if (range.startsWith(`${lang}-`)) {
        if (!prefix || q > prefix.q) prefix = { q, at };
      } else if (range === '*') wildcard ??= { q, at };
    }
    const weight = exact ?? prefix ?? wildcard;
    if (!weight || weight.q <= 0) continue;
    if (!best || weight.q > best.q || (weight.q === best.q && weight.at < best.at))
      best = { lang, q: weight.q, at: weight.at };
  }
  return best?.lang ?? DEFAULT_LANG;
}

/** Why a login page shows a message above the chooser. */
export type ChooserNotice = 'unknown-email-domain';

/** The errors Meridian's own login pages show (oidc-provider's errors are keyed by OAuth code). */
export type LoginErrorKind = 'expired' | 'signed-out-link-invalid';

export interface Messages {
  /** The `<html lang>` / `Content-Language` value. */
  tag: string;
  brand: string;
  servedBy: (region: string) => string;
  /** A person at their home region's broker, sent by the broker of another region. */
  handedOff: (from: string, home: string) => string;
  /** On the chooser: choosing this provider continues at another region's broker. */
  continuesAt: (home: string) => string;
  signIn: string;
  chooseProvider: string;
  noProvider: string;
  orEmail: string;
  emailLabel: string;
  emailHint: string;
  continue: string;
  cancel: string;
  notices: Record<ChooserNotice, string>;
  errors: Record<LoginErrorKind, { title: string; message: string }>;
  startAgain: string;
  /** oidc-provider's error page. */
  providerError: {
    title: string;
    /** A sentence per OAuth error code; others get `fallback`. */
    byCode: Record<string, string>;
    fallback: string;
    help: string;
    details: string;
    code: string;
    description: string;
  };
  logout: {
    title: string;
    question: (region: string) => string;
    yes: string;
    no: string;
  };
  loggedOut: {
    title: string;
    message: string;
    close: string;
  };
}

const en: Messages = {
  tag: 'en',
  brand: 'Meridian sign-in',
  servedBy: (region) => `You are being served by the Meridian broker of region ${region}.`,
  handedOff: (from, home) =>
    `You were sent here from region ${from} because your data is kept in region ${home}.`,
  continuesAt: (home) => `Continues at region ${home}, where your data is kept.`,
  signIn: 'Sign in',
  chooseProvider: 'Choose how to sign in',
  noProvider: 'No identity provider is available.',
  orEmail: 'Or use your email address',
  emailLabel: 'Email address',
  emailHint: 'We pick your identity provider from the domain. Nothing else is looked up.',
  continue: 'Continue',
  cancel: 'Cancel',
  notices: {
    'unknown-email-domain':
      'No identity provider is configured for that email domain. Choose one from the list.',
  },
  errors: {
    expired: {
      title: 'Sign-in expired',
      message: 'This sign-in has expired or was already completed.',
    },
    'signed-out-link-invalid': {
      title: 'Signed out',
      message: 'You are signed out. This link has expired or is not valid.',
    },
  },
  startAgain: 'Go back to the application and start again.',
  providerError: {
    title: 'Sign-in could not continue',
    byCode: {
      invalid_redirect_uri:
        'The application asked to return you to an address it has not registered, so you were not sent back to it.',
      invalid_client: 'The application is not known to this service.',
      invalid_request: 'The application sent a request this service cannot accept.',
      unauthorized_client: 'The application is not allowed to sign you in this way.',
      unsupported_response_type: 'The application asked for a kind of answer this service does not give.',
      invalid_scope: 'The application asked for permissions it may not have.',
      invalid_target: 'The application asked for access to a service it may not use.',
      access_denied: 'The sign-in was refused.',
      server_error: 'Something went wrong on our side.',
      temporarily_unavailable: 'The service is temporarily unavailable.',
    },
    fallback: 'The sign-in request could not be completed.',
    help: 'Go back to the application and start again. If this keeps happening, tell the application’s support team and give them the details below.',
    details: 'Details for support',
    code: 'Error code',
    description: 'Description',
  },
  logout: {
    title: 'Sign out',
    question: (region) => `Do you want to sign out of Meridian at region ${region}?`,
    yes: 'Yes, sign me out',
    no: 'No, stay signed in',
  },
  loggedOut: {
    title: 'Signed out',
    message: 'You are signed out.',
    close: 'You can close this window.',
  },
};

const de: Messages = {
  tag: 'de',
  brand: 'Meridian-Anmeldung',
  servedBy: (region) => `Sie werden vom Meridian-Broker der Region ${region} bedient.`,
  handedOff: (from, home) =>
    `Sie wurden von Region ${from} hierher weitergeleitet, weil Ihre Daten in Region ${home} gespeichert sind.`,
  continuesAt: (home) => `Weiter in Region ${home}, wo Ihre Daten gespeichert sind.`,
  signIn: 'Anmelden',
  chooseProvider: 'Wählen Sie, wie Sie sich anmelden möchten',
  noProvider: 'Es ist kein Identitätsanbieter verfügbar.',
  orEmail: 'Oder mit Ihrer E-Mail-Adresse',
  emailLabel: 'E-Mail-Adresse',
  emailHint: 'Wir wählen Ihren Identitätsanbieter anhand der Domain. Sonst wird nichts nachgeschlagen.',
  continue: 'Weiter',
  cancel: 'Abbrechen',
  notices: {
    'unknown-email-domain':
      'Für diese E-Mail-Domain ist kein Identitätsanbieter eingerichtet. Wählen Sie einen aus der Liste.',
  },
  errors: {
    expired: {
      title: 'Anmeldung abgelaufen',
      message: 'Diese Anmeldung ist abgelaufen oder wurde bereits abgeschlossen.',
    },
    'signed-out-link-invalid': {
      title: 'Abgemeldet',
      message: 'Sie sind abgemeldet. Dieser Link ist abgelaufen oder ungültig.',
    },
  },
  startAgain: 'Kehren Sie zur Anwendung zurück und beginnen Sie erneut.',
  providerError: {
    title: 'Die Anmeldung kann nicht fortgesetzt werden',
    byCode: {
      invalid_redirect_uri:
        'Die Anwendung wollte Sie an eine Adresse zurückleiten, die sie nicht registriert hat. Deshalb wurden Sie nicht zurückgeleitet.',
      invalid_client: 'Die Anwendung ist diesem Dienst nicht bekannt.',
      invalid_request: 'Die Anwendung hat eine Anfrage gesendet, die dieser Dienst nicht annehmen kann.',
      unauthorized_client: 'Die Anwendung darf Sie auf diese Weise nicht anmelden.',
      unsupported_response_type: 'Die Anwendung hat eine Antwortart verlangt, die dieser Dienst nicht gibt.',
      invalid_scope: 'Die Anwendung hat Berechtigungen verlangt, die ihr nicht zustehen.',
      invalid_target: 'Die Anwendung hat Zugriff auf einen Dienst verlangt, den sie nicht nutzen darf.',
      access_denied: 'Die Anmeldung wurde abgelehnt.',
      server_error: 'Bei uns ist ein Fehler aufgetreten.',
      temporarily_unavailable: 'Der Dienst ist vorübergehend nicht erreichbar.',
    },
    fallback: 'Die Anmeldeanfrage konnte nicht abgeschlossen werden.',
    help: 'Kehren Sie zur Anwendung zurück und beginnen Sie erneut. Wenn das wieder passiert, wenden Sie sich an den Support der Anwendung und nennen Sie die folgenden Angaben.',
    details: 'Angaben für den Support',
    code: 'Fehlercode',
    description: 'Beschreibung',
  },
  logout: {
    title: 'Abmelden',
    question: (region) => `Möchten Sie sich bei Meridian in Region ${region} abmelden?`,
    yes: 'Ja, abmelden',
    no: 'Nein, angemeldet bleiben',
  },
  loggedOut: {
    title: 'Abgemeldet',
    message: 'Sie sind abgemeldet.',
    close: 'Sie können dieses Fenster schließen.',
  },
};

export const MESSAGES: Readonly<Record<Lang, Messages>> = { en, de };

export function messages(lang: Lang): Messages {
  return MESSAGES[lang];
}
