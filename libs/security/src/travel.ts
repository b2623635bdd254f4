/**
 * Impossible travel between the regions a person logs in at. Regions stand for places
 * (MERIDIAN_REGION_LOCATIONS); two logins of one subject at regions farther apart than the
 * fastest plausible travel (MERIDIAN_TRAVEL_MAX_KMH) in the time between them are suspicious.
 * Pure: no clock, no database.
 */
export interface GeoPoint {
  lat: number;
  lon: number;
}

const EARTH_RADIUS_KM = 6371.0088;

/** Great-circle distance (haversine) in km. */
export function distanceKm(a: GeoPoint, b: GeoPoint): number {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(h)));
}

export interface TravelVerdict {
  from: string;
  to: string;
  distanceKm: number;
  seconds: number;
  /** The speed the two logins imply. */
  kmh: number;
}

/**
 * The implied travel when it is faster than `maxKmh`; undefined when plausible, when the
 * regions are the same, or when either region has no location.
 */
export function impossibleTravel(
  previous: { region: string; secondsAgo: number },
  region: string,
  locations: Readonly<Record<string, GeoPoint>>,
  maxKmh: number,
): TravelVerdict | undefined {
  if (previous.region === region) return undefined;
  const a = locations[previous.region];
  const b = locations[region];
  if (!a || !b) return undefined;
  const km = distanceKm(a, b);
  // A clock step may make the interval negative or zero: treat it as instantaneous.
  const seconds = Math.max(previous.secondsAgo, 0.001);
  const kmh = km / (seconds / 3600);
  if (kmh <= maxKmh) return undefined;
  return {
    from: previous.region,
    to: region,
    distanceKm: Math.round(km),
    seconds: Math.round(seconds * 10) / 10,
    kmh: Math.round(kmh),
  };
}
