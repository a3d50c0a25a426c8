#!/usr/bin/env bash
# Self-signed CA and a SuperLink certificate for 127.0.0.1/localhost (for trying TLS on one machine).
# On real hosts, put the SuperLink's DNS name / IP into subjectAltName and keep ca.key off the network.
set -euo pipefail
dir=${1:-certs}
mkdir -p "$dir"
openssl req -x509 -newkey rsa:4096 -nodes -days 365 -subj "/CN=harness-ca" -keyout "$dir/ca.key" -out "$dir/ca.crt"
openssl req -newkey rsa:4096 -nodes -subj "/CN=superlink" -keyout "$dir/server.key" -out "$dir/server.csr"
printf "subjectAltName=IP:127.0.0.1,DNS:localhost\n" > "$dir/san.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 365 \
  -extfile "$dir/san.ext" -out "$dir/server.pem"
echo "wrote $dir/ca.crt, $dir/server.pem, $dir/server.key"
