/** Test PKI made with the system's openssl at test time: nothing secret is committed. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Pem {
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

export function makePki(): {
  dir: string;
  ca: Pem;
  server: Pem;
  client(name: string, subject: string): Pem;
  /** Another serving certificate for 127.0.0.1 (a rotation). */
  serverCert(name: string): Pem;
  selfSigned(name: string, subject: string): Pem;
} {
  const dir = mkdtempSync(join(tmpdir(), 'meridian-pki-'));
  const read = (name: string): Pem => ({
    cert: readFileSync(join(dir, `${name}.crt`), 'utf8'),
    key: readFileSync(join(dir, `${name}.key`), 'utf8'),
    certFile: join(dir, `${name}.crt`),
    keyFile: join(dir, `${name}.key`),
  });
  const ecKey = (name: string) =>
    openssl(
      ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`],
      dir,
    );
  ecKey('ca');
  openssl(
    [
      'req',
      '-x509',
      '-new',
      '-key',
      'ca.key',
      '-subj',
      '/CN=Meridian Test CA',
      '-days',
      '2',
      '-out',
      'ca.crt',
    ],
    dir,
  );
  const signed = (name: string, subject: string, ext: string) => {
    ecKey(name);
    openssl(['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`], dir);
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-days',
        '2',
        '-extfile',
        `${name}.ext`,
        '-out',
        `${name}.crt`,
      ],
      dir,
    );
    return read(name);
  };
  const server = signed(
    'server',
    '/CN=127.0.0.1',
    'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n',
  );
  return {
    dir,
    ca: read('ca'),
    server,
    client: (name, subject) => signed(name, subject, 'extendedKeyUsage=clientAuth\n'),
    serverCert: (name) =>
      signed(name, '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'),
    selfSigned: (name, subject) => {
      ecKey(name);
      openssl(
        [
          'req',
          '-x509',
          '-new',
          '-key',
          `${name}.key`,
          '-subj',
          subject,
          '-days',
          '2',
          '-out',
          `${name}.crt`,
        ],
        dir,
      );
      return read(name);
    },
  };
}
