import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsInt, IsOptional, IsString, Max, MaxLength, Min, MinLength } from 'class-validator';

/** 30 days: the longest time two secrets of one client or federation are accepted together. */
const MAX_OVERLAP_SECONDS = 30 * 86400;

export class ClientSecretRotationDto {
  @ApiPropertyOptional({
    description: 'how long the secret being replaced stays valid (0: refused at once, e.g. after a leak)',
    minimum: 0,
    maximum: MAX_OVERLAP_SECONDS,
    default: 86400,
  })
  @IsOptional()
  @IsInt()
  @Min(0)
  @Max(MAX_OVERLAP_SECONDS)
  overlapSeconds?: number;
}

export class FederationSecretRotationDto {
  @ApiProperty({ description: 'the new secret the upstream IdP issued; sealed, never returned' })
  @IsString()
  @MinLength(1)
  @MaxLength(1024)
  clientSecret!: string;

  @ApiPropertyOptional({
    description:
      'how long the secret being replaced is still tried when the upstream refuses the new one (0: dropped at once)',
    minimum: 0,
    maximum: MAX_OVERLAP_SECONDS,
    default: 86400,
  })
  @IsOptional()
  @IsInt()
  @Min(0)
  @Max(MAX_OVERLAP_SECONDS)
  overlapSeconds?: number;
}
