#!/bin/sh
# make-test-certs.sh DIR IP DNSNAME: a throw-away CA (DIR/ca.pem) and a server certificate signed
# by it (DIR/server.pem, DIR/server.key) for IP and DNSNAME, valid for two days.
set -eu
dir="$1" ip="$2" dns="$3"
mkdir -p "$dir"
cd "$dir"
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
# shellcheck disable=SC2086  # $ec is a list of options
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj "/CN=llm-canary Molecule test CA" 2>/dev/null
# shellcheck disable=SC2086
openssl req -new $ec -keyout server.key -out server.csr -subj "/CN=$dns" 2>/dev/null
printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
  'extendedKeyUsage=serverAuth' "subjectAltName=IP:$ip,DNS:$dns" >server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile server.ext -out server.pem 2>/dev/null
