/**
 * Everything one regional broker process holds: its two databases, its keys, the OP engine.
 * Built before Nest starts (so a bad database or a wrong KEK stops the process with one line),
 * then handed to the Nest module as the composition root's dependencies.
 */
import { hkdfSync } from 'node:crypto';
import type Provider from 'oidc-provider';
import type { Logger } from 'pino';
import type { BrokerConfig } from '@meridian/config';
import {
  ControlDatabase,
  RegionDatabase,
  DatabaseAvailability,
  claimRegionDatabase,
  dedicatedProbe,
  type DedicatedProbe,
  createControlDataSource,
  createRegionDataSource,
  migrate,
} from '@meridian/persistence';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '@meridian/persistence';
import { Pkcs11KeyProvider, SigningKeyStore, type KeySet } from '@meridian/keys';
import {
  ADMIN_AUDIENCE,
  ADMIN_SCOPES,
  AccessTokenStatus,
  ControlClientAdapter,
  ResourceCatalog,
  buildProvider,
  hashClientSecret,
  installTokenStatus,
  registerTokenExchange,
  accountFinder,
  consoleClientId,
  splitClientScope,
} from '@meridian/tokens';
import { AuditLog } from '@meridian/audit';
import {
  FEDERATION_CALLBACK_PATH,
  FEDERATION_LOGGED_OUT_PATH,
  FederationRepository,
  LoginService,
  LoginTransactionStore,
  PolicyRepository,
  RetentionJob,
  SubjectLocator,
  SubjectStore,
  UpstreamClient,
  peerClientId,
} from '@meridian/federation';
import type { BrokerMetrics } from '@meridian/observability';
import { adminRolesFor } from '@meridian/console';
import { SecurityRuntime } from '@meridian/security';

import { PeerErasure } from './peer-erasure';
import { OutageResponder } from './unavailable';

export const INTERACTION_PREFIX = '/interaction/';

export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

export class BrokerRuntime {
  private keySet!: KeySet;
  private currentProvider!: Provider;
  private currentHandler!: ReturnType<Provider['callback']>;
  private refreshTimer?: NodeJS.Timeout;
  private closed = false;
  readonly clients: ControlClientAdapter;
  readonly resources: ResourceCatalog;
  readonly tokenStatus: AccessTokenStatus;
  readonly audit: AuditLog;
  readonly keyStore: SigningKeyStore;
  readonly pkcs11?: Pkcs11KeyProvider;
  readonly federations: FederationRepository;
  readonly policies: PolicyRepository;
  readonly upstream: UpstreamClient;
  readonly locator: SubjectLocator;
  readonly subjects: SubjectStore;
  readonly transactions: LoginTransactionStore;
  readonly login: LoginService;
  readonly retention: RetentionJob;
  readonly peerErasure: PeerErasure;
  /** Abuse limits, load shedding and anomaly detectors (libs/security). */
  readonly security: SecurityRuntime;
  /** Which database answers now; routes that need one that does not are refused with 503. */
  readonly availability: DatabaseAvailability;
  private readonly probes: DedicatedProbe[];
  readonly outage: OutageResponder;
  private retentionTimer?: NodeJS.Timeout;
  private clientSyncTimer?: NodeJS.Timeout;
  private syncingClients = false;
  private clientFeedDown = false;

  private constructor(
    readonly config: BrokerConfig,
    readonly logger: Logger,
    readonly metrics: BrokerMetrics,
    readonly controlDb: ControlDatabase,
    readonly regionDb: RegionDatabase,
    private readonly embedded: EmbeddedPostgresHandle | undefined,
  ) {
    this.clients = new ControlClientAdapter(controlDb, { maxEntries: config.clientCacheSize });
    this.resources = new ResourceCatalog(controlDb, config.region);
    this.tokenStatus = new AccessTokenStatus(config.issuer, regionDb, () => this.keySet);
    this.audit = new AuditLog(regionDb);
    // Signing keys in an HSM: opened (and logged in) before anything signs.
    this.pkcs11 =
      config.signingKeyProvider.kind === 'pkcs11'
        ? Pkcs11KeyProvider.open(config.signingKeyProvider)
        : undefined;
    this.keyStore = new SigningKeyStore(regionDb, controlDb, {
      region: config.region,
      alg: config.signingAlg,
      kek: config.kek,
      kekPrevious: config.kekPrevious,
      pkcs11: this.pkcs11,
    });
    this.federations = new FederationRepository(controlDb, config.region, config.kek, config.kekPrevious);
    this.policies = new PolicyRepository(controlDb);
    this.upstream = new UpstreamClient(config.upstreamTimeoutMs);
    this.locator = new SubjectLocator(controlDb, config.locatorPepper);
    this.subjects = new SubjectStore(regionDb, this.audit, this.locator, config.locatorPepper);
    this.transactions = new LoginTransactionStore(regionDb);
    this.security = new SecurityRuntime({
      config: config.security,
      region: config.region,
      issuer: config.issuer,
      regionDb,
      audit: this.audit,
      registry: metrics.registry,
      logger: this.logger.child({ component: 'security' }),
      trustedProxies: config.trustedProxies,
      pepper: config.locatorPepper,
      publicKeys: () => ({
        fingerprint: this.keySet.fingerprint,
        keys: this.keySet.published.map((k) => k.publicJwk),
      }),
      verifyToken: (token, audience) => this.tokenStatus.verify(token, { audience }),
    });
    this.login = new LoginService({
      region: config.region,
      issuer: config.issuer,
      provider: () => this.currentProvider,
      federations: this.federations,
      policies: this.policies,
      upstream: this.upstream,
      subjects: this.subjects,
      transactions: this.transactions,
      peerIssuer: (region) => this.peerIssuer(region),
      signingKey: () => this.keySet.current,
      logoutStateKey: Buffer.from(
        hkdfSync('sha256', config.kek, 'meridian', `logout-state:${config.region}`, 32),
      ),
      audit: this.audit,
      logger: this.logger.child({ component: 'login' }),
      adminRoles: {
        audience: ADMIN_AUDIENCE,
        of: (principal) => adminRolesFor(config.consoleRoles, principal),
      },
      security: this.security.loginEvents,
    });
    this.retention = new RetentionJob(regionDb, this.subjects, this.policies, this.audit);
    this.peerErasure = new PeerErasure({
      region: config.region,
      issuer: config.issuer,
      controlDb,
      subjects: this.subjects,
      keys: () => this.keySet,
      logger: this.logger.child({ component: 'erasure' }),
      timeoutMs: config.upstreamTimeoutMs,
    });
    // Probes on connections of their own: a saturated request pool must not look like an outage.
    const urlOf = (ds: { options: unknown }) => (ds.options as { url: string }).url;
    this.probes = [
      dedicatedProbe(urlOf(controlDb.dataSource), `meridian-${config.region}-control-probe`),
      dedicatedProbe(urlOf(regionDb.dataSource), `meridian-${config.region}-probe`),
    ];
    this.availability = new DatabaseAvailability(
      { control: this.probes[0]!.probe, region: this.probes[1]!.probe },
      {
        onChange: (database, available, reason) => {
          if (available) this.logger.info({ database }, 'database answers again: serving');
          else
            this.logger.error({ database, reason }, 'database unavailable: refusing requests that need it');
        },
      },
    );
    this.outage = new OutageResponder(config.region, this.availability);
  }

  private peerIssuers: { at: number; map: Map<string, string> } | undefined;

  /** A registered region's broker issuer (control plane), cached briefly. */
  async peerIssuer(region: string): Promise<string | undefined> {
    if (!this.peerIssuers || Date.now() - this.peerIssuers.at > 5_000) {
      const rows = await this.controlDb.query<{ id: string; issuer: string }>(
        'select id, issuer from region',
      );
      this.peerIssuers = { at: Date.now(), map: new Map(rows.map((r) => [r.id, r.issuer])) };
    }
    return this.peerIssuers.map.get(region);
  }

  /**
   * This broker as an OIDC client of every peer broker: one client per region in the control
   * plane, authenticating with private_key_jwt against the region's published keys.
   */
  private async upsertPeerClient(): Promise<void> {
    const clientId = peerClientId(this.config.region);
    const metadata = {
      client_id: clientId,
      client_name: `Meridian broker of region ${this.config.region}`,
      redirect_uris: [`${this.config.issuer}${FEDERATION_CALLBACK_PATH}`],
      post_logout_redirect_uris: [`${this.config.issuer}${FEDERATION_LOGGED_OUT_PATH}`],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: this.config.signingAlg,
      jwks: { keys: this.keySet.published.map((k) => k.publicJwk) },
      scope: 'openid email profile address phone',
      allowed_scopes: 'openid email profile address phone',
      resources: [],
      meridian_region: this.config.region,
    };
    await this.controlDb.query(
      `insert into oidc_client (client_id, metadata) values ($1, $2)
       on conflict (client_id) do update set metadata = excluded.metadata, updated_at = now()`,
      [clientId, metadata],
    );
    this.clients.invalidate(clientId);
  }

  /**
   * The console of this region: a built-in client of this broker, provisioned at every start
   * (and at every key reload, like the peer client: private_key_jwt with the region's keys). It
   * may ask for the admin audience; a person gets its scopes only by the role mapping.
   */
  private async upsertConsoleClient(): Promise<void> {
    const clientId = consoleClientId(this.config.region);
    const metadata = {
      client_id: clientId,
      client_name: `Meridian console of region ${this.config.region}`,
      redirect_uris: [`${this.config.issuer}/console/callback`],
      post_logout_redirect_uris: [`${this.config.issuer}/console/signed-out`],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: this.config.signingAlg,
      jwks: { keys: this.keySet.published.map((k) => k.publicJwk) },
      ...splitClientScope(['openid', 'offline_access', ...ADMIN_SCOPES].join(' ')),
      resources: [ADMIN_AUDIENCE],
    };
    await this.controlDb.query(
      `insert into oidc_client (client_id, metadata) values ($1, $2)
       on conflict (client_id) do update set metadata = excluded.metadata, updated_at = now()`,
      [clientId, metadata],
    );
    this.clients.invalidate(clientId);
  }

  static async start(config: BrokerConfig, logger: Logger, metrics: BrokerMetrics): Promise<BrokerRuntime> {
    let embedded: EmbeddedPostgresHandle | undefined;
    let controlUrl = config.controlDatabaseUrl;
    let regionUrl = config.regionDatabaseUrl;
    if (!controlUrl || !regionUrl) {
      embedded = await startEmbeddedPostgres({
        dataDir: `${config.dataDir}/pg`,
        log: (line) => logger.debug({ component: 'embedded-postgres' }, line),
      });
      controlUrl = await embedded.ensureDatabase('meridian_control');
      regionUrl = await embedded.ensureDatabase(`meridian_${config.region.replace(/-/g, '_')}`);
      logger.warn(
        'using the embedded development PostgreSQL under %s (not for production)',
        `${config.dataDir}/pg`,
      );
    }
    const control = createControlDataSource({
      url: controlUrl,
      applicationName: `meridian-${config.region}-control`,
    });
    const region = createRegionDataSource({ url: regionUrl, applicationName: `meridian-${config.region}` });
    try {
      await control.initialize();
    } catch (err) {
      await embedded?.stop();
      throw new StartupError(`CONTROL_DATABASE_URL: cannot connect (${(err as Error).message})`);
    }
    try {
      await region.initialize();
    } catch (err) {
      await control.destroy();
      await embedded?.stop();
      throw new StartupError(`REGION_DATABASE_URL: cannot connect (${(err as Error).message})`);
    }
    const runtime = new BrokerRuntime(
      config,
      logger,
      metrics,
      new ControlDatabase(control),
      new RegionDatabase(config.region, region),
      embedded,
    );
    try {
      await runtime.init();
    } catch (err) {
      await runtime.close();
      throw err;
    }
    return runtime;
  }

  private async init(): Promise<void> {
    const { config } = this;
    const ranControl = await migrate(this.controlDb.dataSource);
    const ranRegion = await migrate(this.regionDb.dataSource);
    if (ranControl.length + ranRegion.length > 0)
      this.logger.info({ control: ranControl, region: ranRegion }, 'migrations applied');
    try {
      await claimRegionDatabase(this.regionDb.dataSource, config.region);
    } catch (err) {
      throw new StartupError((err as Error).message);
    }
    await this.controlDb.query(
      `insert into region (id, issuer, jurisdiction) values ($1, $2, $3)
       on conflict (id) do update set issuer = excluded.issuer, jurisdiction = excluded.jurisdiction, updated_at = now()`,
      [config.region, config.issuer, config.jurisdiction],
    );
    await this.keyStore.ensureKeys();
    try {
      this.keySet = await this.keyStore.load();
    } catch (err) {
      throw new StartupError((err as Error).message);
    }
    await this.upsertAdminClient();
    await this.upsertPeerClient();
    await this.upsertConsoleClient();
    this.rebuildProvider();
    this.availability.start();
    this.security.start();
    if (config.retentionIntervalSeconds > 0) {
      this.retentionTimer = setInterval(() => {
        this.retention
          .run()
          .catch((err) =>
            this.logger.error({ err: { message: (err as Error).message } }, 'retention job failed'),
          );
      }, config.retentionIntervalSeconds * 1000);
      this.retentionTimer.unref();
    }
    await this.syncClients();
    this.clientSyncTimer = setInterval(() => void this.syncClients(), 1_000);
    this.clientSyncTimer.unref();
    this.refreshTimer = setInterval(() => {
      this.tick().catch((err) =>
        this.logger.error({ err: { message: (err as Error).message } }, 'key refresh failed'),
      );
    }, config.keyRefreshIntervalSeconds * 1000);
    this.refreshTimer.unref();
  }

  /**
   * One poll of the control plane's client change feed. A failure is logged once per outage;
   * meanwhile cached clients age out (ControlClientAdapter), so nothing is served on stale trust.
   */
  private async syncClients(): Promise<void> {
    if (this.syncingClients) return;
    this.syncingClients = true;
    try {
      await this.clients.sync();
      if (this.clientFeedDown) {
        this.clientFeedDown = false;
        this.logger.info('client change feed answers again');
      }
    } catch (err) {
      if (!this.clientFeedDown) {
        this.clientFeedDown = true;
        this.logger.warn(
          { err: { message: (err as Error).message } },
          'client change feed unavailable; cached clients expire within 5 s',
        );
      }
    } finally {
      this.syncingClients = false;
    }
  }

  /** The bootstrap admin client: created or updated at every start from the environment. */
  private async upsertAdminClient(): Promise<void> {
    const { adminClientId, adminClientSecret } = this.config;
    const metadata = {
      client_id: adminClientId,
      client_secret: hashClientSecret(adminClientSecret),
      client_name: 'Meridian bootstrap admin',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      ...splitClientScope(ADMIN_SCOPES.join(' ')),
      resources: [ADMIN_AUDIENCE],
    };
    await this.controlDb.query(
      `insert into oidc_client (client_id, metadata) values ($1, $2)
       on conflict (client_id) do update set metadata = excluded.metadata, updated_at = now()`,
      [adminClientId, metadata],
    );
    this.clients.invalidate(adminClientId);
  }

  get provider(): Provider {
    return this.currentProvider;
  }

  get handler(): ReturnType<Provider['callback']> {
    return this.currentHandler;
  }

  get keys(): KeySet {
    return this.keySet;
  }

  private rebuildProvider(): void {
    const provider = buildProvider({
      issuer: this.config.issuer,
      region: this.config.region,
      jurisdiction: this.config.jurisdiction,
      signingAlg: this.config.signingAlg,
      kek: this.config.kek,
      kekPrevious: this.config.kekPrevious,
      keys: this.keySet,
      regionDb: this.regionDb,
      controlDb: this.controlDb,
      clients: this.clients,
      resources: this.resources,
      interactionPath: (uid) => `${INTERACTION_PREFIX}${uid}`,
      account: (client, sub) => this.login.account(client, sub),
      pairwiseSecret: this.config.locatorPepper,
    });
    // First, so it is the outermost middleware: database outages become 503 (unavailable.ts).
    this.outage.installOn(provider);
    // RP-Initiated Logout: once the broker session is over, end the upstream (or home broker)
    // session the person came through.
    provider.use(async (ctx, next) => {
      await next();
      const oidc = (
        ctx as unknown as {
          oidc?: { route?: string; params?: { logout?: string }; session?: { accountId?: string } };
        }
      ).oidc;
      if (
        oidc?.route !== 'end_session_confirm' ||
        ctx.status !== 303 ||
        !oidc.params?.logout ||
        !oidc.session?.accountId
      )
        return;
      const next303 = await this.login.upstreamLogout(
        oidc.session.accountId,
        String(ctx.response.get('location')),
      );
      if (next303) {
        ctx.status = 303;
        ctx.redirect(next303);
      }
    });
    this.security.installInto(provider);
    installTokenStatus(provider, this.tokenStatus, async (caller, payload) => {
      if (caller === payload.client_id || caller === this.config.adminClientId) return true;
      const aud = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
      for (const audience of aud) {
        if (audience && (await this.resources.byAudience(audience))?.clientId === caller) return true;
      }
      return false;
    });
    registerTokenExchange(provider, {
      tokenStatus: this.tokenStatus,
      findAccount: accountFinder((client, sub) => this.login.account(client, sub)),
      resources: this.resources,
      regionDb: this.regionDb,
      signingAlg: this.config.signingAlg,
      currentKid: () => this.keySet.current.kid,
    });
    const successes = new Map<string, { inc(): void }>();
    provider.on('grant.success', (ctx) => {
      const grantType = String(ctx.oidc.params?.grant_type ?? 'unknown');
      let counter = successes.get(grantType);
      if (!counter)
        successes.set(grantType, (counter = this.metrics.tokenRequests.labels(grantType, 'success')));
      counter.inc();
    });
    provider.on('grant.error', (ctx, err) => {
      this.metrics.tokenRequests.inc({
        grant_type: String(ctx.oidc?.params?.grant_type ?? 'unknown'),
        outcome: (err as { error?: string }).error ?? 'server_error',
      });
    });
    provider.on('server_error', (_ctx, err) => {
      this.logger.error(
        { err: { message: (err as Error).message, stack: (err as Error).stack } },
        'OP server error',
      );
    });
    this.currentProvider = provider;
    this.currentHandler = provider.callback();
  }

  /** Scheduled rotation and pick-up of keys rotated by another replica. */
  async tick(): Promise<void> {
    if (this.closed) return;
    if (await this.keyStore.rotateIfDue(this.config.keyRotationIntervalSeconds)) {
      this.metrics.keyRotations.inc({ trigger: 'schedule' });
      await this.audit.record({
        actor: 'system',
        action: 'keys.rotate',
        targetType: 'signing_key',
        detail: { trigger: 'schedule' },
      });
      this.logger.info('signing key rotated on schedule');
    }
    await this.reloadKeys();
    const swept = await this.subjects.sweepErasedCopies();
    if (swept) this.logger.info({ count: swept }, 'erased copies of subjects erased at their home region');
  }

  async reloadKeys(): Promise<boolean> {
    const next = await this.keyStore.load();
    if (next.fingerprint === this.keySet.fingerprint) return false;
    this.keySet = next;
    this.rebuildProvider();
    await this.keyStore.publishToControlPlane();
    await this.upsertPeerClient();
    await this.upsertConsoleClient();
    this.logger.info({ kid: next.current.kid }, 'signing keys reloaded');
    return true;
  }

  async rotateKeys(actor: string): Promise<{ current: string; next: string; retiring: string }> {
    const result = await this.keyStore.rotate();
    this.metrics.keyRotations.inc({ trigger: 'admin' });
    await this.reloadKeys();
    await this.audit.record({
      actor,
      action: 'keys.rotate',
      targetType: 'signing_key',
      targetId: result.current,
      detail: { ...result },
    });
    return result;
  }

  async ping(): Promise<{ control: boolean; region: boolean }> {
    const probe = async (db: { query: (sql: string) => Promise<unknown> }) => {
      try {
        await Promise.race([
          db.query('select 1'),
          new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 2000).unref()),
        ]);
        return true;
      } catch {
        return false;
      }
    };
    const [control, region] = await Promise.all([probe(this.controlDb), probe(this.regionDb)]);
    return { control, region };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.availability.stop();
    await Promise.all(this.probes.map((p) => p.close()));
    this.security.stop();
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    if (this.clientSyncTimer) clearInterval(this.clientSyncTimer);
    await Promise.allSettled([this.controlDb.dataSource.destroy(), this.regionDb.dataSource.destroy()]);
    await this.embedded?.stop();
    this.pkcs11?.close();
  }
}
