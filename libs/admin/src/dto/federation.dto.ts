import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  IsArray,
  IsBoolean,
  IsIn,
  IsObject,
  IsOptional,
  IsString,
  Matches,
  MaxLength,
  MinLength,
  ValidateNested,
} from 'class-validator';

export class HomeRealmDto {
  @ApiPropertyOptional({ example: ['example.de'] })
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(200)
  @Matches(/^(?=.{1,253}$)([a-z0-9-]{1,63}\.)+[a-z]{2,63}$/i, {
    each: true,
    message: 'homeRealm.emailDomains must be domain names',
  })
  emailDomains?: string[];

  @ApiPropertyOptional({ example: ['DE'] })
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(300)
  @Matches(/^[A-Z]{2}$/, { each: true, message: 'homeRealm.countries must be ISO 3166-1 alpha-2 codes' })
  countries?: string[];
}

export const FEDERATION_KINDS = ['national', 'regional', 'global'] as const;
export const UPSTREAM_AUTH_METHODS = [
  'client_secret_basic',
  'client_secret_post',
  'private_key_jwt',
] as const;

/** PUT /admin/federations/{id} (CONTRACT.md). */
export class FederationDto {
  @ApiProperty({ example: 'DE national eID' })
  @IsString()
  @MinLength(1)
  @MaxLength(120)
  displayName!: string;

  @ApiProperty({ example: 'https://id.bund.example' })
  @IsString()
  @Matches(/^https?:\/\/[^\s#?]+$/, { message: 'issuer must be an http(s) URL without query or fragment' })
  @MaxLength(2048)
  issuer!: string;

  @ApiProperty()
  @IsString()
  @MinLength(1)
  @MaxLength(255)
  clientId!: string;

  @ApiPropertyOptional({ description: 'sealed under this region’s KEK; never returned' })
  @IsOptional()
  @IsString()
  @MinLength(1)
  @MaxLength(1024)
  clientSecret?: string;

  @ApiPropertyOptional({ example: ['openid', 'email', 'profile'] })
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(30)
  @Matches(/^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/, { each: true, message: 'scopes must be scope tokens' })
  scopes?: string[];

  @ApiProperty({ enum: FEDERATION_KINDS })
  @IsIn(FEDERATION_KINDS, { message: `kind must be one of ${FEDERATION_KINDS.join(', ')}` })
  kind!: (typeof FEDERATION_KINDS)[number];

  @ApiPropertyOptional({ example: 'DE' })
  @IsOptional()
  @Matches(/^[A-Z]{2}$/, { message: 'jurisdiction must be an ISO 3166-1 alpha-2 code or EU' })
  jurisdiction?: string;

  @ApiPropertyOptional({ type: HomeRealmDto })
  @IsOptional()
  @IsObject()
  @ValidateNested()
  @Type(() => HomeRealmDto)
  homeRealm?: HomeRealmDto;

  @ApiPropertyOptional({ example: { email: 'mail', name: 'displayName' } })
  @IsOptional()
  @IsObject()
  claimMapping?: Record<string, string>;

  @ApiPropertyOptional({ default: true })
  @IsOptional()
  @IsBoolean()
  enabled?: boolean;

  @ApiPropertyOptional({
    default: true,
    description: 'false: no personal data at rest, only the pseudonymous link',
  })
  @IsOptional()
  @IsBoolean()
  storeProfile?: boolean;

  @ApiPropertyOptional({ enum: UPSTREAM_AUTH_METHODS, default: 'client_secret_basic' })
  @IsOptional()
  @IsIn(UPSTREAM_AUTH_METHODS, {
    message: `tokenEndpointAuthMethod must be one of ${UPSTREAM_AUTH_METHODS.join(', ')}`,
  })
  tokenEndpointAuthMethod?: (typeof UPSTREAM_AUTH_METHODS)[number];

  @ApiPropertyOptional({ default: false })
  @IsOptional()
  @IsBoolean()
  useUserinfo?: boolean;
}
