#!/bin/sh
# The image's entrypoint: runs consul-xds-bridge with the given arguments ("serve" by default).
#
# The admin listener (/healthz, /readyz, /metrics, /debug/*) stays on the container's loopback
# unless a bearer token protects /debug/* (CONSUL_XDS_BRIDGE_ADMIN_DEBUG_TOKEN): then it listens
# on every interface, port 9102. An explicit CONSUL_XDS_BRIDGE_ADMIN_LISTEN always wins.
set -eu
if [ -z "${CONSUL_XDS_BRIDGE_ADMIN_LISTEN:-}" ]; then
    if [ -n "${CONSUL_XDS_BRIDGE_ADMIN_DEBUG_TOKEN:-}" ]; then
        CONSUL_XDS_BRIDGE_ADMIN_LISTEN=0.0.0.0:9102
    else
        CONSUL_XDS_BRIDGE_ADMIN_LISTEN=127.0.0.1:9102
    fi
    export CONSUL_XDS_BRIDGE_ADMIN_LISTEN
fi
exec consul-xds-bridge "$@"
