import { generateKeyPair, SignJWT } from 'jose';
const m = await import('/work/main/dist/authn/jwt.js');
const { privateKey } = await generateKeyPair('ES256');
const headers = [];
for (let i = 0; i < 1000; i++) { const t = await new SignJWT({ scope: 'orders:read orders:write', tenant: 'acme', client_id: 'bench-client', n: i }).setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'at+jwt' }).setIssuer('https://issuer.bench.example').setAudience('https://api.bench.example').setSubject('bench-user').setIssuedAt().setExpirationTime('1h').setJti('j' + i).sign(privateKey); headers.push(Buffer.from('Bearer ' + t, 'latin1').toString('latin1')); }
const N = 200000;
const steps = {
  'slice only': (h) => h.slice(7).length,
  'regex': (h) => m.isJwsShaped(h.slice(7)),
  'parseJwt(shaped)': (h) => { const t = h.slice(7); return m.parseJwt(t, 8192, m.isJwsShaped(t)); },
  'payload ref': (h) => { const t = h.slice(7); const d1 = t.indexOf('.'), d2 = t.lastIndexOf('.'); return JSON.parse(Buffer.from(t.slice(d1 + 1, d2), 'base64url').toString()); },
  'payload latin1': (h) => { const t = h.slice(7); const d1 = t.indexOf('.'), d2 = t.lastIndexOf('.'); return JSON.parse(Buffer.from(t.slice(d1 + 1, d2), 'base64url').toString('latin1')); },
  'payload b64 only': (h) => { const t = h.slice(7); const d1 = t.indexOf('.'), d2 = t.lastIndexOf('.'); return Buffer.from(t.slice(d1 + 1, d2), 'base64url'); },
  'payload atob': (h) => { const t = h.slice(7); const d1 = t.indexOf('.'), d2 = t.lastIndexOf('.'); return JSON.parse(atob(t.slice(d1 + 1, d2).replace(/-/g, '+').replace(/_/g, '/'))); },
  'sig buffer': (h) => { const t = h.slice(7); return Buffer.from(t.slice(t.lastIndexOf('.') + 1), 'base64url'); },
};
for (let k = 0; k < 2; k++) for (const [name, fn] of Object.entries(steps)) {
  const t0 = process.hrtime.bigint(); for (let i = 0; i < N; i++) fn(headers[i % 1000]);
  if (k === 1) console.log(name.padEnd(20), (Number(process.hrtime.bigint() - t0) / N).toFixed(0), 'ns');
}
console.log('token length', headers[0].length - 7, 'payload', headers[0].split('.')[1].length);
