#!/usr/bin/env bash
# Grade gatehouse's default HTTPS listener with external scanners from Debian's packages.
#
#   scripts/tls-scan.sh              build, start gatehouse with default TLS settings, scan, grade
#   SKIP_BUILD=1 scripts/tls-scan.sh use the existing dist/
#   TESTSSL=0 scripts/tls-scan.sh    sslscan only (testssl.sh takes a minute or two)
#
# Starts one listener with an ECDSA certificate and one with an RSA certificate (both from a
# throwaway CA made with openssl), scans each with sslscan (protocols, suites, groups) and
# testssl.sh (protocols, server defaults, vulnerabilities), then checks the Mozilla
# "intermediate" policy: no SSL/TLS 1.0/1.1, only forward-secret AEAD suites, no weak groups.
# Exit status 0 = the policy holds. Reports go to $OUT (default ./tls-scan-report).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-tls-scan-report}
mkdir -p "$OUT"
command -v sslscan >/dev/null || { echo "sslscan is not installed (apt-get install sslscan)" >&2; exit 2; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then npm run --silent build; fi

work=$(mktemp -d)
gw_pid=""
cleanup() {
  if [ -n "$gw_pid" ]; then kill "$gw_pid" 2>/dev/null || true; wait "$gw_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# A throwaway CA and two server certificates (ECDSA P-256, RSA 2048) for localhost.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=gatehouse scan CA" \
  -keyout "$work/ca-key.pem" -out "$work/ca.pem" 2>/dev/null
issue() { # name keyspec…
  local name=$1; shift
  openssl req -newkey "$@" -nodes -subj "/CN=localhost" -keyout "$work/$name-key.pem" -out "$work/$name.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n' > "$work/$name.ext"
  openssl x509 -req -in "$work/$name.csr" -CA "$work/ca.pem" -CAkey "$work/ca-key.pem" -CAcreateserial -days 2 \
    -extfile "$work/$name.ext" -out "$work/$name.pem" 2>/dev/null
}
issue ec ec -pkeyopt ec_paramgen_curve:P-256
issue rsa rsa:2048

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
EC_PORT=$(free_port)
RSA_PORT=$(free_port)
UP_PORT=$(free_port)

# Only the certificate and key are set: every other TLS setting is gatehouse's default.
cat > "$work/gatehouse.yaml" <<EOF
listen:
  - { name: ecdsa, host: 127.0.0.1, port: $EC_PORT, tls: { cert: ec.pem, key: ec-key.pem } }
  - { name: rsa, host: 127.0.0.1, port: $RSA_PORT, tls: { cert: rsa.pem, key: rsa-key.pem } }
upstreams: [{ name: api, url: "http://127.0.0.1:$UP_PORT" }]
routes: [{ name: api, path: /, upstream: api, public: true }]
log: { level: warn }
EOF

node bin/gatehouse.js start --config "$work/gatehouse.yaml" > "$OUT/gatehouse.log" 2>&1 &
gw_pid=$!
for _ in $(seq 1 100); do
  if curl -s -o /dev/null --cacert "$work/ca.pem" "https://localhost:$RSA_PORT/" 2>/dev/null; then break; fi
  sleep 0.1
done

status=0
for listener in ecdsa:$EC_PORT rsa:$RSA_PORT; do
  name=${listener%%:*}
  port=${listener##*:}
  report="$OUT/sslscan-$name.txt"
  sslscan --no-colour --show-sigs "127.0.0.1:$port" > "$report"
  echo "== $name listener (127.0.0.1:$port): $report"
  grep -E '^(SSLv|TLSv)[0-9.]+ +(enabled|disabled)' "$report" | sed 's/^/   /'
  # The policy checks.
  if grep -Eq '^(SSLv2|SSLv3|TLSv1\.0|TLSv1\.1) +enabled' "$report"; then
    echo "   FAIL: a protocol older than TLS 1.2 is enabled"; status=1
  fi
  accepted=$(grep -E '^(Preferred|Accepted) ' "$report" || true)
  echo "$accepted" | sed 's/^/   /'
  bad=$(echo "$accepted" | awk '{print $5}' | grep -Ev '^(TLS_AES_128_GCM_SHA256|TLS_AES_256_GCM_SHA384|TLS_CHACHA20_POLY1305_SHA256|ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305))$' || true)
  if [ -n "$bad" ]; then echo "   FAIL: suites outside the forward-secret AEAD set: $bad"; status=1; fi
  if grep -Eiq 'Insecure session renegotiation supported' "$report"; then echo "   FAIL: insecure renegotiation"; status=1; fi
  if grep -Eiq '^Compression enabled' "$report"; then echo "   FAIL: TLS compression (CRIME)"; status=1; fi
  if grep -E 'heartbleed' "$report" | grep -vq 'not vulnerable'; then echo "   FAIL: heartbleed"; status=1; fi
  if grep -Eq '^TLSv1\.[23] +(64|112) bits' "$report"; then echo "   FAIL: a weak key-exchange group"; status=1; fi
done

if [ "${TESTSSL:-1}" != 0 ] && command -v testssl >/dev/null; then
  for listener in ecdsa:$EC_PORT rsa:$RSA_PORT; do
    name=${listener%%:*}
    port=${listener##*:}
    report="$OUT/testssl-$name.txt"
    echo "== testssl.sh $name listener: $report"
    # -p protocols (incl. ALPN/h2), -s cipher categories, -f forward secrecy, -P server preference,
    # -S server defaults (certificate, HSTS-less TLS layer), -h headers (HSTS), -U vulnerabilities.
    testssl --quiet --color 0 --warnings off --openssl-timeout 10 -p -s -f -P -S -h -U \
      --ip 127.0.0.1 "https://localhost:$port/" > "$report" 2>&1 || true
    grep -E 'SSLv2|SSLv3|TLS 1(\.[0-3])? |ALPN/HTTP2|NULL ciphers|Anonymous NULL|Export ciphers|LOW: 64 Bit|Triple DES|Obsolete CBC|Strong encryption|Has server cipher order|Negotiated protocol|Negotiated cipher|Strict Transport|VULNERABLE' "$report" | sed 's/^/   /' || true
    if grep -q 'VULNERABLE' "$report" && ! grep -E 'VULNERABLE' "$report" | grep -q 'not vulnerable'; then
      echo "   testssl reports a VULNERABLE finding: see $report"; status=1
    fi
  done
fi

if [ $status -eq 0 ]; then echo "RESULT: PASS — Mozilla intermediate policy holds on both listeners"; else echo "RESULT: FAIL"; fi
exit $status
