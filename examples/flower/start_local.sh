#!/usr/bin/env bash
# SuperLink + 3 SuperNodes on 127.0.0.1 with TLS (run make_certs.sh first). flwr >= 1.41: the SuperLink serves
# the Fleet, Control and Runtime APIs over HTTPS on one port (--host/--port, default 127.0.0.1:8000).
# On real hosts: start the SuperLink with --host 0.0.0.0 and a certificate for its name, and each SuperNode on
# its own machine with --superlink <superlink-host>:8000 and its own partition-id. Every host runs the apps in
# its own environment (pip install 'fedllm-harness[flower]'), so the SuperLink does not install the app's
# dependencies itself (--disable-runtime-dependency-installation).
set -euo pipefail
certs=${CERTS:-certs}
port=${SUPERLINK_PORT:-8000}
node_port=${SUPERNODE_PORT:-9094}
flower-superlink --ssl-ca-certfile "$certs/ca.crt" --ssl-certfile "$certs/server.pem" --ssl-keyfile "$certs/server.key" \
  --host 127.0.0.1 --port "$port" --disable-runtime-dependency-installation &
sleep 5
for id in 0 1 2; do  # each SuperNode's own ClientApp runtime API on a port of its own
  flower-supernode --root-certificates "$certs/ca.crt" --superlink "127.0.0.1:$port" --port "$((node_port + id))" \
    --node-config "partition-id=$id num-partitions=3" &
done
wait
