/** PUBLIC_BASE_URL and RATE_LIMIT_PER_MINUTE (issue #6): parsing and defaults. */
import { describe, expect, it } from 'vitest';
import { loadConfig, rateLimitPerMinute } from '../../../src/config/config.js';

const AUTH = { AUTH_JWKS_FILE: '/dev/null', AUTH_ISSUER: 'https://issuer.example', AUTH_AUDIENCE: 'https://adapter.example', AUTH_CENTRES: 'a=urn:x|a' };

describe('PUBLIC_BASE_URL', () => {
  it('is optional (the bound address is used) and loses a trailing slash', () => {
    expect(loadConfig({}).PUBLIC_BASE_URL).toBeUndefined();
    expect(loadConfig({ PUBLIC_BASE_URL: 'https://adapter.example.org/base/' }).PUBLIC_BASE_URL).toBe('https://adapter.example.org/base');
  });

  it.each(['adapter.example.org', 'ftp://adapter.example.org', 'https://adapter.example.org/?x=1', 'https://adapter.example.org/#f', 'javascript:alert(1)'])('refuses %j', (url) => {
    expect(() => loadConfig({ PUBLIC_BASE_URL: url })).toThrow(/PUBLIC_BASE_URL/);
  });
});

describe('RATE_LIMIT_PER_MINUTE', () => {
  it('defaults to 600 with authentication and to none without (loopback development)', () => {
    expect(rateLimitPerMinute(loadConfig(AUTH))).toBe(600);
    expect(rateLimitPerMinute(loadConfig({}))).toBe(0);
  });

  it('is taken as given, 0 disabling it', () => {
    expect(rateLimitPerMinute(loadConfig({ ...AUTH, RATE_LIMIT_PER_MINUTE: '0' }))).toBe(0);
    expect(rateLimitPerMinute(loadConfig({ RATE_LIMIT_PER_MINUTE: '30' }))).toBe(30);
  });

  it.each(['-1', '1.5', 'many'])('refuses %j', (value) => {
    expect(() => loadConfig({ RATE_LIMIT_PER_MINUTE: value })).toThrow(/RATE_LIMIT_PER_MINUTE/);
  });
});
