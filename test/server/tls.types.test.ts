import { describe, expectTypeOf, test } from 'vitest';
import type { ListenerTlsConfig } from '../../src/config/types.js';
import {
  createCertificateAuthority,
  createDevCertificate,
  type CertificateAuthority,
  type DevCertificate,
  type IssuedCertificate,
} from '../../src/demo/dev-cert.js';
import type { BoundListener } from '../../src/server/listener.js';
import { clientCertificateMode, hstsHeader, loadCertificateMaterial, type CertificateInfo, type TlsServer } from '../../src/server/tls.js';

describe('TLS public API types', () => {
  test('createDevCertificate resolves to the files the demo prints', () => {
    expectTypeOf(createDevCertificate).returns.resolves.toEqualTypeOf<DevCertificate>();
    expectTypeOf<DevCertificate['caFile']>().toEqualTypeOf<string>();
    expectTypeOf(createCertificateAuthority).returns.resolves.toEqualTypeOf<CertificateAuthority>();
    expectTypeOf<CertificateAuthority['issue']>().returns.resolves.toEqualTypeOf<IssuedCertificate>();
  });

  test('listeners expose reload and the current certificate; reload reports success', () => {
    expectTypeOf<TlsServer['reload']>().returns.resolves.toEqualTypeOf<boolean>();
    expectTypeOf<NonNullable<BoundListener['certificate']>>().returns.toEqualTypeOf<CertificateInfo>();
    expectTypeOf(loadCertificateMaterial).returns.toExtend<CertificateInfo>();
  });

  test('config shapes', () => {
    expectTypeOf(clientCertificateMode).returns.toEqualTypeOf<'off' | 'optional' | 'required'>();
    expectTypeOf(hstsHeader).returns.toEqualTypeOf<[string, string][]>();
    expectTypeOf<'required'>().toExtend<NonNullable<ListenerTlsConfig['requestCert']>>();
    expectTypeOf<'always'>().not.toExtend<NonNullable<ListenerTlsConfig['requestCert']>>();
    expectTypeOf<{ cert: string; key: string }>().toExtend<NonNullable<ListenerTlsConfig['sni']>[number]>();
  });
});
