#!/usr/bin/env bash
# Makes a development CA and certificates for a TLS MQTT listener and for CoAP DTLS
# with certificates: a server certificate, the gateway's client certificate, and one
# client certificate per DEVICE_ID (CN = the device id, which the CoAP gateway takes as
# the device's identity). Not for production: keys are unencrypted and the CA lives
# next to them. Usage: Certs/make-dev-certs.sh [OUT_DIR] [SERVER_NAME] [DEVICE_ID...]
set -euo pipefail
out="${1:-$(dirname "$0")/dev}"
name="${2:-localhost}"
shift $(( $# > 2 ? 2 : $# ))
devices=("$@")
mkdir -p "$out"
cd "$out"
days=825

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -keyout ca.key -out ca.crt -subj "/CN=Updraft dev CA" 2>/dev/null

# Broker (server) certificate, valid for SERVER_NAME, localhost and 127.0.0.1.
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
  -out server.csr -subj "/CN=$name" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' "$name" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
  -extfile server.ext -out server.crt 2>/dev/null

# Gateway client certificate (for brokers that require client certificates).
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout gateway.key \
  -out gateway.csr -subj "/CN=updraft-gateway" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' > gateway.ext
openssl x509 -req -in gateway.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
  -extfile gateway.ext -out gateway.crt 2>/dev/null

# Device client certificates (CoAP DTLS): CN = device id.
for device in "${devices[@]}"; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "device-$device.key" \
    -out "device-$device.csr" -subj "/CN=$device" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' > "device-$device.ext"
  openssl x509 -req -in "device-$device.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile "device-$device.ext" -out "device-$device.crt" 2>/dev/null
done

rm -f ./*.csr ./*.ext ca.srl
chmod 600 ./*.key
echo "Wrote $(pwd): ca.crt, server.crt/.key (CN=$name), gateway.crt/.key${devices:+, device-<id>.crt/.key for ${devices[*]}}"
