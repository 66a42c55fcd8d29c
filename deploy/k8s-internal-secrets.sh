#!/usr/bin/env bash
# Makes the internal PKI by hand for Kubernetes (when cert-manager is not used): runs
# scripts/lib/internal-certs.sh into PKI_DIR (kept: it holds the CA key; the next run reuses the
# CA and renews what is near expiry) and creates or updates one Secret per service,
# padlock-<service>-internal-tls with tls.crt, tls.key and ca.crt — the keys a cert-manager Secret
# has, what k8s/base mounts. The operator certificate stays in PKI_DIR/operator (padlock-admin
# --tls-dir). Restart the Deployments after a renewal (they read the files at start-up).
#
#   deploy/k8s-internal-secrets.sh NAMESPACE [PKI_DIR]     (default PKI_DIR: ./padlock-pki-NAMESPACE)
set -euo pipefail
ns="${1:?usage: deploy/k8s-internal-secrets.sh NAMESPACE [PKI_DIR]}"
pki="${2:-./padlock-pki-$ns}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/lib/internal-certs.sh" "$pki" gateway presence message-queue key-directory notifier \
  operator
for svc in gateway presence message-queue key-directory notifier; do
  kubectl -n "$ns" create secret generic "padlock-$svc-internal-tls" \
    --from-file=tls.crt="$pki/$svc/tls.crt" --from-file=tls.key="$pki/$svc/tls.key" \
    --from-file=ca.crt="$pki/$svc/ca.crt" --dry-run=client -o yaml | kubectl -n "$ns" apply -f -
done
# The VAPID key pair (Web Push): made once in PKI_DIR, kept (devices' subscriptions name it).
if [ ! -s "$pki/vapid.pem" ]; then
  (umask 077; openssl ecparam -name prime256v1 -genkey -noout -out "$pki/vapid.pem")
fi
openssl ec -in "$pki/vapid.pem" -pubout -out "$pki/vapid.pub.pem" 2>/dev/null
kubectl -n "$ns" create secret generic padlock-vapid --from-file=vapid.pem="$pki/vapid.pem" \
  --from-file=vapid.pub.pem="$pki/vapid.pub.pem" --dry-run=client -o yaml | kubectl -n "$ns" apply -f -
echo "secrets applied in $ns; the CA and the operator certificate are in $pki (keep it private)"
