#!/bin/sh
# The health script path of the jitsi/jvb image, for probes and compose files written for it: exit 0
# iff the bridge's GET /about/health answers 200. A thin wrapper over `bridge healthcheck` (this image
# has no curl), which finds the REST API from JVB_REST_HOST/JVB_REST_PORT like the bridge itself.
exec /usr/local/bin/bridge healthcheck "$@"
