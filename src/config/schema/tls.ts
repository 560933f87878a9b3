import { closed, duration, nonEmptyString, stringList, type JsonSchema } from './common.js';

/** `listen.tls`: makes a listener HTTPS (issue: TLS everywhere). */
export const listenerTls: JsonSchema = closed(
  {
    cert: { ...nonEmptyString, description: 'PEM certificate file (chain allowed), relative to the config file.' },
    key: { ...nonEmptyString, description: 'PEM private key file, relative to the config file.' },
    minVersion: { enum: ['TLSv1.2', 'TLSv1.3'], description: 'Lowest TLS version accepted (default TLSv1.2).' },
    ciphers: { ...nonEmptyString, description: 'OpenSSL cipher list for TLS 1.2 (default: forward-secret AEAD only).' },
    http2: { type: 'boolean', description: 'Offer h2 through ALPN (default true).' },
    clientCa: { ...nonEmptyString, description: 'PEM CA bundle to verify client certificates with.' },
    requestCert: { enum: [false, true, 'optional', 'required'], description: 'Ask clients for a certificate.' },
    hsts: closed({
      maxAge: duration,
      includeSubDomains: { type: 'boolean' },
      preload: { type: 'boolean' },
      enabled: { type: 'boolean' },
    }),
    reload: closed({ watch: { type: 'boolean' }, debounce: duration }),
    sni: {
      type: 'array',
      description: 'More certificates on the same port, chosen by the TLS server name (SNI); the cert/key above is the default.',
      items: closed(
        {
          hosts: { ...stringList, description: 'Server names served with this certificate (`*.example.com` = one label); default: its subjectAltName DNS names.' },
          cert: { ...nonEmptyString, description: 'PEM certificate file (chain allowed).' },
          key: { ...nonEmptyString, description: 'PEM private key file.' },
        },
        ['cert', 'key'],
      ),
    },
  },
  ['cert', 'key'],
);

/** Outbound TLS settings (upstreams, JWKS, discovery, introspection). */
export const clientTls: JsonSchema = closed({
  ca: { ...nonEmptyString, description: 'PEM CA bundle trusted in addition to the system roots.' },
  cert: { ...nonEmptyString, description: 'PEM client certificate (mTLS).' },
  key: { ...nonEmptyString, description: 'PEM client key (mTLS).' },
  servername: nonEmptyString,
  minVersion: { enum: ['TLSv1.2', 'TLSv1.3'] },
});

export const http2Settings: JsonSchema = closed({
  maxConcurrentStreams: { type: 'integer', minimum: 1 },
  maxHeaderListSize: { type: 'integer', minimum: 1024 },
  maxResetsPerSecond: { type: 'integer', minimum: 1 },
});

export { stringList };
