import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  IsArray,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
  ValidateNested,
} from 'class-validator';

const REGION_ID = /^[a-z][a-z0-9-]{0,31}$/;

/** One kind of event a sidecar saw, aggregated over its report interval. */
export class ReportedEventDto {
  @IsIn(['residency_violation', 'token_rejected'])
  type!: 'residency_violation' | 'token_rejected';

  @IsInt()
  @Min(1)
  @Max(1_000_000)
  count!: number;

  /** token_rejected: the verifier's code (ERR_TOKEN_SIGNATURE, ERR_TOKEN_ISSUER, …). */
  @IsOptional()
  @Matches(/^ERR_[A-Z_]{1,40}$/)
  code?: string;

  @IsOptional()
  @IsString()
  @MaxLength(200)
  client_id?: string;

  @IsOptional()
  @IsString()
  @MaxLength(200)
  sub?: string;

  /** The token's residency.region (the subject's home). */
  @IsOptional()
  @Matches(REGION_ID)
  token_region?: string;

  @IsOptional()
  @IsArray()
  @ArrayMaxSize(32)
  @Matches(REGION_ID, { each: true })
  processing?: string[];

  @IsOptional()
  @IsString()
  @MaxLength(2048)
  issuer?: string;
}

/** POST /security/events: what one sidecar saw since its last report. */
export class SecurityReportDto {
  /** The service the sidecar guards (its audience). */
  @IsString()
  @MaxLength(2048)
  audience!: string;

  /** The region the service runs in (SIDECAR_REGION). */
  @IsOptional()
  @Matches(REGION_ID)
  region?: string;

  @IsArray()
  @ArrayMaxSize(500)
  @ValidateNested({ each: true })
  @Type(() => ReportedEventDto)
  events!: ReportedEventDto[];
}
