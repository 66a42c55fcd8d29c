#!/usr/bin/env bash
# Generates Padlock's internal PKI with the openssl CLI: one CA, one certificate per service and
# one operator certificate, all ECDSA P-256 (docs/OPERATIONS.md "Internal TLS").
#
#   scripts/lib/internal-certs.sh OUT_DIR [NAME...]
#
# NAMEs default to: key-directory message-queue presence gateway notifier operator. A NAME of `operator`
# or `operator-<who>` gets an operator certificate (client only); any other NAME a service
# certificate (client and server). Layout, the same keys as a cert-manager Secret:
#
#   OUT_DIR/ca/ca.crt  ca.key                    the CA (the key stays here; back it up or drop it)
#   OUT_DIR/<name>/tls.crt  tls.key  ca.crt      one directory per identity
#
# Identities live in a URI SAN: spiffe://padlock/service/<name> or spiffe://padlock/operator/<who>.
# A service certificate also names the service as a DNS SAN (`key-directory`; clients check the
# server against it) plus `localhost`, 127.0.0.1 and ::1, and any names in
# PADLOCK_CERT_EXTRA_DNS (space-separated; `*` in them is replaced by the service name, e.g.
# "*.padlock.svc.cluster.local").
#
# Idempotent: an existing CA is kept; a certificate is (re)made only when it is missing, does not
# verify against the CA, or expires within 7 days. Lifetimes: CA 5 years (PADLOCK_CA_DAYS),
# services 1 year (PADLOCK_CERT_DAYS), operators 90 days (PADLOCK_OPERATOR_CERT_DAYS).
set -euo pipefail

out="${1:?usage: internal-certs.sh OUT_DIR [NAME...]}"
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(key-directory message-queue presence gateway notifier operator)
ca_days="${PADLOCK_CA_DAYS:-1825}"
cert_days="${PADLOCK_CERT_DAYS:-365}"
operator_days="${PADLOCK_OPERATOR_CERT_DAYS:-90}"
week=$((7 * 24 * 3600))

command -v openssl >/dev/null || { echo "internal-certs.sh: openssl not found" >&2; exit 1; }
umask 077
mkdir -p "$out/ca"

new_key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }

if [ ! -s "$out/ca/ca.key" ] || [ ! -s "$out/ca/ca.crt" ] \
    || ! openssl x509 -in "$out/ca/ca.crt" -noout -checkend "$week" >/dev/null 2>&1; then
  new_key "$out/ca/ca.key"
  openssl req -x509 -new -key "$out/ca/ca.key" -sha256 -days "$ca_days" \
    -subj "/O=Padlock/CN=Padlock internal CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$out/ca/ca.crt" 2>/dev/null
  # A new CA invalidates every certificate below it.
  for dir in "$out"/*/; do
    [ "$(basename "$dir")" = ca ] || rm -f "$dir/tls.crt"
  done
fi

for name in "${names[@]}"; do
  [[ "$name" =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]] || { echo "bad name: $name" >&2; exit 2; }
  dir="$out/$name"
  mkdir -p "$dir"
  if [ -s "$dir/tls.crt" ] && [ -s "$dir/tls.key" ] \
      && openssl verify -CAfile "$out/ca/ca.crt" "$dir/tls.crt" >/dev/null 2>&1 \
      && openssl x509 -in "$dir/tls.crt" -noout -checkend "$week" >/dev/null 2>&1; then
    cp "$out/ca/ca.crt" "$dir/ca.crt"
    continue
  fi
  case "$name" in
    operator|operator-*)
      who="${name#operator}"; who="${who#-}"; who="${who:-default}"
      days="$operator_days"
      subj="/O=Padlock/OU=operators/CN=$who"
      san="URI:spiffe://padlock/operator/$who"
      eku="clientAuth" ;;
    *)
      days="$cert_days"
      subj="/O=Padlock/OU=services/CN=$name"
      san="DNS:$name,DNS:localhost,IP:127.0.0.1,IP:::1,URI:spiffe://padlock/service/$name"
      for extra in ${PADLOCK_CERT_EXTRA_DNS:-}; do san="$san,DNS:${extra//\*/$name}"; done
      eku="serverAuth,clientAuth" ;;
  esac
  new_key "$dir/tls.key"
  ext="$(mktemp)"
  printf '%s\n' "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=$eku" "subjectAltName=$san" >"$ext"
  openssl req -new -key "$dir/tls.key" -subj "$subj" 2>/dev/null \
    | openssl x509 -req -CA "$out/ca/ca.crt" -CAkey "$out/ca/ca.key" -CAcreateserial \
        -CAserial "$out/ca/ca.srl" -sha256 -days "$days" -extfile "$ext" \
        -out "$dir/tls.crt" 2>/dev/null
  rm -f "$ext"
  cp "$out/ca/ca.crt" "$dir/ca.crt"
done
# Readable by the owner only (keys); containers that run as another user get a copy or a chown.
chmod 700 "$out" "$out"/*/ 2>/dev/null || true
