import { describe, expect, it } from 'vitest';
import { distanceKm, impossibleTravel } from './travel';

const LOCATIONS = {
  eu: { lat: 50.11, lon: 8.68 },
  us: { lat: 38.9, lon: -77.04 },
  ch: { lat: 47.37, lon: 8.54 },
};

describe('impossible travel between regions', () => {
  it('measures great-circle distances', () => {
    // Frankfurt – Washington is about 6,500 km.
    expect(distanceKm(LOCATIONS.eu, LOCATIONS.us)).toBeGreaterThan(6400);
    expect(distanceKm(LOCATIONS.eu, LOCATIONS.us)).toBeLessThan(6600);
    expect(distanceKm(LOCATIONS.eu, LOCATIONS.eu)).toBe(0);
  });

  it('flags a second login across the Atlantic a minute after the first', () => {
    const v = impossibleTravel({ region: 'eu', secondsAgo: 60 }, 'us', LOCATIONS, 1000);
    expect(v).toMatchObject({ from: 'eu', to: 'us', seconds: 60 });
    expect(v!.kmh).toBeGreaterThan(300_000);
  });

  it('lets the same trip pass after a flight’s time, and nearby regions quickly', () => {
    expect(impossibleTravel({ region: 'eu', secondsAgo: 8 * 3600 }, 'us', LOCATIONS, 1000)).toBeUndefined();
    // Frankfurt – Zürich (~300 km) in 30 minutes: 600 km/h.
    expect(impossibleTravel({ region: 'eu', secondsAgo: 1800 }, 'ch', LOCATIONS, 1000)).toBeUndefined();
  });

  it('says nothing for the same region or a region without a location', () => {
    expect(impossibleTravel({ region: 'eu', secondsAgo: 1 }, 'eu', LOCATIONS, 1000)).toBeUndefined();
    expect(impossibleTravel({ region: 'eu', secondsAgo: 1 }, 'ap', LOCATIONS, 1000)).toBeUndefined();
  });
});
