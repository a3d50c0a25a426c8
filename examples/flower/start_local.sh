#!/usr/bin/env bash
# SuperLink + 3 SuperNodes on 127.0.0.1 with TLS (run make_certs.sh first). On real hosts run each
# SuperNode on its own machine with --superlink <superlink-host>:9092 and its own partition-id.
set -euo pipefail
certs=${CERTS:-certs}
flower-superlink --ssl-ca-certfile "$certs/ca.crt" --ssl-certfile "$certs/server.pem" --ssl-keyfile "$certs/server.key" \
  --fleet-api-address 127.0.0.1:9092 --control-api-address 127.0.0.1:9093 --serverappio-api-address 127.0.0.1:9091 &
sleep 5
for id in 0 1 2; do
  flower-supernode --root-certificates "$certs/ca.crt" --superlink 127.0.0.1:9092 \
    --clientappio-api-address "127.0.0.1:$((9094 + id))" --node-config "partition-id=$id num-partitions=3" &
done
wait
