import { describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../src/config/load.js';

describe('examples/tls.yaml', () => {
  it('loads: HTTPS with SNI and HTTP/2 limits, a redirect port, an mTLS port, verified TLS outbound', () => {
    const config = loadConfigFile('examples/tls.yaml');
    const [pub, redirect, partners] = config.listen;
    expect(pub!.tls).toMatchObject({ cert: 'certs/api.example.com.pem', hsts: { maxAge: 365 * 86_400_000 }, reload: { watch: true, debounce: 250 } });
    expect(pub!.tls!.sni).toHaveLength(1);
    expect(pub!.http2).toEqual({ maxConcurrentStreams: 100, maxResetsPerSecond: 200 });
    expect(redirect!.tls).toBeUndefined();
    expect(partners!.tls).toMatchObject({ clientCa: 'certs/partners-ca.pem', requestCert: 'required' });
    expect(config.issuers[0]!.tls).toEqual({ ca: 'certs/internal-ca.pem' });
    expect(config.upstreams[0]!.tls).toMatchObject({ ca: 'certs/internal-ca.pem', cert: 'certs/gateway-client.pem' });
  });
});
