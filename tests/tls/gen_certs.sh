#!/bin/bash
# Makes the certificates the TLS tests use, with openssl, into DIR:
#   ca.pem ca.key                 a test CA
#   server.pem server.key         for localhost and 127.0.0.1, by the CA
#   client.pem client.key         a client certificate by the CA
#   wrong.pem wrong.key           a client certificate by another CA
#   expired.pem expired.key       a server certificate that expired in 2020
set -euo pipefail
dir=$1
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext

key ca.key
openssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj "/CN=piperpc test CA"
key other-ca.key
openssl req -x509 -new -key other-ca.key -out other-ca.pem -days 2 -subj "/CN=another CA"

for name in server client wrong expired; do
  key "$name.key"
  openssl req -new -key "$name.key" -out "$name.csr" -subj "/CN=$name"
done
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -out server.pem -days 2 -extfile san.ext 2>/dev/null
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -out client.pem -days 2 2>/dev/null
openssl x509 -req -in wrong.csr -CA other-ca.pem -CAkey other-ca.key \
  -CAcreateserial -out wrong.pem -days 2 2>/dev/null

# "openssl ca" can set the validity dates freely.
mkdir -p ca-db
: > ca-db/index.txt
echo 1000 > ca-db/serial
cat > ca.cnf <<CNF
[ ca ]
default_ca = test_ca
[ test_ca ]
database = ca-db/index.txt
new_certs_dir = ca-db
serial = ca-db/serial
default_md = sha256
policy = any
copy_extensions = copy
[ any ]
commonName = supplied
CNF
openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key \
  -in expired.csr -out expired.pem -extfile san.ext \
  -startdate 20200101000000Z -enddate 20200102000000Z 2>/dev/null
echo "certificates in $dir"
