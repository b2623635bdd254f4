import { Inject, Injectable } from '@nestjs/common';
import {
  CONSOLE_CLIENT_PREFIX,
  DEFAULT_SECRET_OVERLAP_SECONDS,
  generateClientSecret,
  hashClientSecret,
  previousSecretValidUntil,
} from '@meridian/tokens';
import { ADMIN_DEPS, type AdminDeps } from './admin-deps';
import { AdminError } from './admin-error';
import type { ClientSecretRotationDto, FederationSecretRotationDto } from './dto/secret-rotation.dto';

const SECRET_METHODS = new Set(['client_secret_basic', 'client_secret_post']);

/**
 * Secret lifecycle: a client's secret (stored hashed) and this region's copy of an upstream
 * federation's secret (sealed under the KEK) are replaced with an overlap, during which the old
 * and the new one both work — at most two at once, the old one refused after its expiry.
 */
@Injectable()
export class SecretRotationService {
  constructor(@Inject(ADMIN_DEPS) private readonly deps: AdminDeps) {}

  /** A new client secret, shown once; the current one stays valid for `overlapSeconds`. */
  async rotateClientSecret(actor: string, clientId: string, dto: ClientSecretRotationDto) {
    this.checkRotatable(clientId);
    const overlapSeconds = dto.overlapSeconds ?? DEFAULT_SECRET_OVERLAP_SECONDS;
    const secret = generateClientSecret();
    const previousExpiresAt = await this.deps.controlDb.dataSource.transaction(async (tx) => {
      const [row]: { metadata: Record<string, unknown> }[] = await tx.query(
        'select metadata from oidc_client where client_id = $1 for update',
        [clientId],
      );
      if (!row) throw new AdminError('ERR_NOT_FOUND', `client ${clientId} does not exist`);
      const metadata = { ...row.metadata };
      const method = String(metadata.token_endpoint_auth_method ?? 'client_secret_basic');
      if (!SECRET_METHODS.has(method) || typeof metadata.client_secret !== 'string')
        throw new AdminError(
          'ERR_CONFLICT',
          `client ${clientId} authenticates with ${method}: it has no client secret to rotate`,
        );
      const now = Math.floor(Date.now() / 1000);
      const pending = previousSecretValidUntil(metadata, now);
      if (pending !== undefined)
        throw new AdminError(
          'ERR_CONFLICT',
          `client ${clientId} already has two valid secrets: the previous one is accepted until ${new Date(pending * 1000).toISOString()}; end that overlap first (DELETE /admin/clients/${clientId}/secret/previous)`,
        );
      if (overlapSeconds > 0) {
        metadata.previous_client_secret = metadata.client_secret;
        metadata.previous_client_secret_expires_at = now + overlapSeconds;
      } else {
        delete metadata.previous_client_secret;
        delete metadata.previous_client_secret_expires_at;
      }
      metadata.client_secret = hashClientSecret(secret);
      await this.validate(metadata);
      await tx.query('update oidc_client set metadata = $2, updated_at = now() where client_id = $1', [
        clientId,
        metadata,
      ]);
      return overlapSeconds > 0 ? new Date((now + overlapSeconds) * 1000) : null;
    });
    this.deps.clients.invalidate(clientId);
    await this.deps.audit.record({
      actor,
      action: 'client.secret.rotate',
      targetType: 'client',
      targetId: clientId,
      detail: { overlapSeconds, previousSecretExpiresAt: previousExpiresAt?.toISOString() ?? null },
    });
    return {
      client_id: clientId,
      client_secret: secret,
      previous_client_secret_expires_at: previousExpiresAt
        ? Math.floor(previousExpiresAt.getTime() / 1000)
        : null,
    };
  }

  /** Ends a rotation's overlap now: the previous secret is refused from here on. */
  async revokePreviousClientSecret(actor: string, clientId: string): Promise<void> {
    this.checkRotatable(clientId);
    const revoked = await this.deps.controlDb.dataSource.transaction(async (tx) => {
      const [row]: { metadata: Record<string, unknown> }[] = await tx.query(
        'select metadata from oidc_client where client_id = $1 for update',
        [clientId],
      );
      if (!row) throw new AdminError('ERR_NOT_FOUND', `client ${clientId} does not exist`);
      const valid = previousSecretValidUntil(row.metadata, Math.floor(Date.now() / 1000)) !== undefined;
      const { previous_client_secret: _p, previous_client_secret_expires_at: _e, ...metadata } = row.metadata;
      await tx.query('update oidc_client set metadata = $2, updated_at = now() where client_id = $1', [
        clientId,
        metadata,
      ]);
      return valid;
    });
    this.deps.clients.invalidate(clientId);
    if (!revoked)
      throw new AdminError('ERR_NOT_FOUND', `client ${clientId} has no previous secret that is still valid`);
    await this.deps.audit.record({
      actor,
      action: 'client.secret.revoke_previous',
      targetType: 'client',
      targetId: clientId,
    });
  }

  /**
   * The upstream IdP issued this region a new client secret. The broker uses it from now on and
   * falls back to the previous one while the upstream still refuses the new one, until the
   * overlap ends or the new one is promoted.
   */
  async rotateFederationSecret(actor: string, id: string, dto: FederationSecretRotationDto) {
    const fed = await this.deps.federations.get(id);
    if (!fed) throw new AdminError('ERR_NOT_FOUND', `federation ${id} does not exist`);
    if (fed.tokenEndpointAuthMethod === 'private_key_jwt')
      throw new AdminError(
        'ERR_CONFLICT',
        `federation ${id} authenticates with private_key_jwt: it has no client secret to rotate`,
      );
    const overlapSeconds = dto.overlapSeconds ?? DEFAULT_SECRET_OVERLAP_SECONDS;
    const result = await this.deps.federations.rotateSecret(id, dto.clientSecret, overlapSeconds);
    if (!result.ok && result.reason === 'no-secret')
      throw new AdminError(
        'ERR_CONFLICT',
        `this region holds no client secret for federation ${id} yet: PUT the federation with clientSecret`,
      );
    if (!result.ok)
      throw new AdminError(
        'ERR_CONFLICT',
        `federation ${id} already has two secrets: the previous one is tried until ${result.previousExpiresAt.toISOString()}; promote the current one first (POST /admin/federations/${id}/secret/promote)`,
      );
    await this.deps.audit.record({
      actor,
      action: 'federation.secret.rotate',
      targetType: 'federation',
      targetId: id,
      detail: { overlapSeconds, previousSecretExpiresAt: result.previousExpiresAt?.toISOString() ?? null },
    });
    return this.federationSecrets(id);
  }

  /** The upstream has switched: stop trying the previous secret. */
  async promoteFederationSecret(actor: string, id: string) {
    if (!(await this.deps.federations.get(id)))
      throw new AdminError('ERR_NOT_FOUND', `federation ${id} does not exist`);
    if (!(await this.deps.federations.promoteSecret(id)))
      throw new AdminError('ERR_NOT_FOUND', `federation ${id} has no previous secret to drop`);
    await this.deps.audit.record({
      actor,
      action: 'federation.secret.promote',
      targetType: 'federation',
      targetId: id,
    });
    return this.federationSecrets(id);
  }

  async federationSecrets(id: string) {
    if (!(await this.deps.federations.get(id)))
      throw new AdminError('ERR_NOT_FOUND', `federation ${id} does not exist`);
    return { id, region: this.deps.region, ...(await this.deps.federations.secretStatus(id)) };
  }

  private checkRotatable(clientId: string): void {
    if (clientId === this.deps.adminClientId)
      throw new AdminError(
        'ERR_PROTECTED',
        'the bootstrap admin client is managed by MERIDIAN_ADMIN_CLIENT_ID/SECRET',
      );
    if (clientId.startsWith(CONSOLE_CLIENT_PREFIX))
      throw new AdminError('ERR_PROTECTED', 'console clients are built in and use private_key_jwt');
  }

  private async validate(metadata: Record<string, unknown>): Promise<void> {
    try {
      await this.deps.validateClientMetadata(metadata);
    } catch (err) {
      throw new AdminError(
        'ERR_INVALID_CLIENT_METADATA',
        (err as { error_description?: string }).error_description ?? (err as Error).message,
      );
    }
  }
}
