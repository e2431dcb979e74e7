#!/bin/sh
# The health script path of the jitsi/jicofo image, for probes and compose files written for it: exit 0
# iff the focus's GET /about/health answers 200. A thin wrapper over `focus healthcheck` (this image has
# no curl), which finds the REST API from JICOFO_REST_HOST/JICOFO_REST_PORT/JICOFO_ENABLE_REST like the
# focus itself.
exec /usr/local/bin/focus healthcheck "$@"
