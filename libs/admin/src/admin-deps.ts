import type { ControlDatabase, RegionDatabase } from '@meridian/persistence';
import type {
  FederationRepository,
  PolicyRepository,
  SubjectLocator,
  SubjectStore,
} from '@meridian/federation';
import type { AuditLog } from '@meridian/audit';
import type { AccessTokenStatus, ControlClientAdapter, ResourceCatalog } from '@meridian/tokens';
import type { KeySet } from '@meridian/keys';

/** What the admin API needs from the broker it runs in: narrow, so it is testable on its own. */
export interface AdminDeps {
  region: string;
  adminClientId: string;
  controlDb: ControlDatabase;
  audit: AuditLog;
  tokenStatus: AccessTokenStatus;
  clients: ControlClientAdapter;
  resources: ResourceCatalog;
  /** oidc-provider's own client metadata validation; throws with a message naming the field. */
  validateClientMetadata(metadata: Record<string, unknown>): Promise<void>;
  rotateKeys(actor: string): Promise<{ current: string; next: string; retiring: string }>;
  keys(): KeySet;
  issuer: string;
  regionDb: RegionDatabase;
  federations: FederationRepository;
  /** Fetches and checks an upstream issuer's discovery (openid-client); throws with the reason. */
  checkIssuer(issuer: string, clientId: string): Promise<void>;
  policies: PolicyRepository;
  subjects: SubjectStore;
  locator: SubjectLocator;
  /** Tells the other regions to erase their copies of an erased subject. */
  notifyErasure(sub: string): Promise<void>;
}

export const ADMIN_DEPS = Symbol('ADMIN_DEPS');
