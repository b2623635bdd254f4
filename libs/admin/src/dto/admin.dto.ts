import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import {
  ArrayMaxSize,
  ArrayNotEmpty,
  IsArray,
  IsBoolean,
  IsIn,
  IsInt,
  IsObject,
  IsOptional,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
  MinLength,
} from 'class-validator';

const REGION_ID = /^[a-z][a-z0-9-]{0,31}$/;
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/; // RFC 6749 §3.3 scope-token
const ABSOLUTE_URI = /^[a-zA-Z][a-zA-Z0-9+.-]*:[^\s#]+$/; // RFC 8707 §2: absolute URI, no fragment
const HTTP_URL = /^https?:\/\/[^\s#]+$/;

export class RegionDto {
  @ApiProperty({ example: 'https://us.id.example.com' })
  @IsString()
  @Matches(HTTP_URL, { message: 'issuer must be an http(s) URL' })
  @MaxLength(2048)
  issuer!: string;

  @ApiPropertyOptional({ example: 'US' })
  @IsOptional()
  @Matches(/^[A-Z]{2}$/, { message: 'jurisdiction must be an ISO 3166-1 alpha-2 code or EU' })
  jurisdiction?: string;
}

export class ResourceDto {
  @ApiProperty({ example: 'https://orders.example.com' })
  @IsString()
  @Matches(ABSOLUTE_URI, { message: 'audience must be an absolute URI without a fragment' })
  @MaxLength(2048)
  audience!: string;

  @ApiProperty({ example: ['orders:read'] })
  @IsArray()
  @ArrayNotEmpty()
  @ArrayMaxSize(100)
  @Matches(SCOPE_TOKEN, { each: true, message: 'scopes must be scope tokens (RFC 6749 §3.3)' })
  scopes!: string[];

  @ApiProperty({ example: 'eu' })
  @Matches(REGION_ID, { message: 'region must be a region id such as eu' })
  region!: string;

  @ApiPropertyOptional({ minimum: 1, maximum: 3600, default: 300 })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(3600)
  accessTokenTtlSeconds?: number;

  @ApiPropertyOptional({
    description:
      'public JWK with alg (ECDH-ES…, RSA-OAEP-256) and optional enc (A128GCM, A256GCM): tokens for this service are signed, then encrypted',
  })
  @IsOptional()
  @IsObject()
  encryptionJwk?: Record<string, unknown>;

  @ApiPropertyOptional({
    description:
      'the client id the service itself uses (RFC 8693: only it may exchange tokens issued for this audience)',
  })
  @IsOptional()
  @Matches(/^[A-Za-z0-9._~:-]{1,128}$/, { message: 'clientId must be a client id' })
  clientId?: string;
}

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const CLIENT_GRANT_TYPES = [
  'authorization_code',
  'refresh_token',
  'client_credentials',
  TOKEN_EXCHANGE,
] as const;
export const CLIENT_AUTH_METHODS = [
  'client_secret_basic',
  'client_secret_post',
  'private_key_jwt',
  'tls_client_auth',
  'self_signed_tls_client_auth',
] as const;

/** OIDC client metadata names (RFC 7591 / OIDC Registration), plus `resources`. */
export class ClientDto {
  @ApiPropertyOptional({ description: 'at least 32 characters; generated and returned once when omitted' })
  @IsOptional()
  @IsString()
  @MinLength(32)
  @MaxLength(512)
  client_secret?: string;

  @ApiPropertyOptional()
  @IsOptional()
  @IsString()
  @MaxLength(200)
  client_name?: string;

  @ApiPropertyOptional({
    enum: ['web', 'native'],
    default: 'web',
    description: 'native apps may use loopback or private-use redirect URIs',
  })
  @IsOptional()
  @IsIn(['web', 'native'], { message: 'application_type must be web or native' })
  application_type?: string;

  @ApiPropertyOptional({
    default: false,
    description: 'RFC 9449 §5.2: every token request must carry a DPoP proof',
  })
  @IsOptional()
  @IsBoolean()
  dpop_bound_access_tokens?: boolean;

  @ApiPropertyOptional({
    default: false,
    description: 'RFC 8705 §3: access tokens bound to the client certificate',
  })
  @IsOptional()
  @IsBoolean()
  tls_client_certificate_bound_access_tokens?: boolean;

  @ApiPropertyOptional({
    enum: ['public', 'pairwise'],
    default: 'public',
    description: 'OIDC Core §8: pairwise gives this client its own stable sub per person',
  })
  @IsOptional()
  @IsIn(['public', 'pairwise'], { message: 'subject_type must be public or pairwise' })
  subject_type?: string;

  @ApiProperty({ example: ['https://app.example.com/callback'] })
  @IsArray()
  @ArrayMaxSize(50)
  @Matches(/^[a-zA-Z][a-zA-Z0-9+.-]*:[^\s#]+$/, {
    each: true,
    message: 'redirect_uris must be absolute URIs without a fragment',
  })
  redirect_uris!: string[];

  @ApiPropertyOptional()
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(50)
  @Matches(/^[a-zA-Z][a-zA-Z0-9+.-]*:[^\s#]+$/, {
    each: true,
    message: 'post_logout_redirect_uris must be absolute URIs',
  })
  post_logout_redirect_uris?: string[];

  @ApiProperty({ enum: CLIENT_GRANT_TYPES, isArray: true })
  @IsArray()
  @ArrayNotEmpty()
  @IsIn(CLIENT_GRANT_TYPES, {
    each: true,
    message: `grant_types must be among ${CLIENT_GRANT_TYPES.join(', ')}`,
  })
  grant_types!: string[];

  @ApiProperty({ example: ['code'] })
  @IsArray()
  @IsIn(['code'], { each: true, message: 'response_types may only contain code' })
  response_types!: string[];

  @ApiProperty({ enum: CLIENT_AUTH_METHODS })
  @IsIn(CLIENT_AUTH_METHODS, {
    message: `token_endpoint_auth_method must be one of ${CLIENT_AUTH_METHODS.join(', ')}`,
  })
  token_endpoint_auth_method!: string;

  @ApiPropertyOptional({ example: 'openid offline_access orders:read' })
  @IsOptional()
  @IsString()
  @Matches(/^[\x21\x23-\x5B\x5D-\x7E]+( [\x21\x23-\x5B\x5D-\x7E]+)*$/, {
    message: 'scope must be space-separated scope tokens',
  })
  @MaxLength(2048)
  scope?: string;

  @ApiPropertyOptional({ description: 'public JWK Set, for private_key_jwt' })
  @IsOptional()
  @IsObject()
  jwks?: { keys: unknown[] };

  @ApiPropertyOptional()
  @IsOptional()
  @IsString()
  @MaxLength(1024)
  tls_client_auth_subject_dn?: string;

  @ApiPropertyOptional({
    description: 'audiences this client may ask tokens for (RFC 8707)',
    example: ['https://orders.example.com'],
  })
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(100)
  @Matches(ABSOLUTE_URI, { each: true, message: 'resources must be absolute URIs (audiences)' })
  resources?: string[];
}
