# consul-xds-bridge: serves Consul's catalog to Envoy over gRPC xDS v3.
#   docker build -t consul-xds-bridge .
#   docker run --rm -p 18000:18000 -e CONSUL_HTTP_ADDR=http://consul:8500 consul-xds-bridge
# The admin listener (9102: /healthz, /readyz, /metrics, /debug/*) stays on the container's
# loopback unless CONSUL_XDS_BRIDGE_ADMIN_DEBUG_TOKEN is set (see deploy/docker/entrypoint.sh).
FROM python:3.12-slim

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="consul-xds-bridge" \
      org.opencontainers.image.description="Serves HashiCorp Consul's service catalog to Envoy and proxyless gRPC clients over xDS v3" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CONSUL_XDS_BRIDGE_XDS_LISTEN=0.0.0.0:18000

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY bridge ./bridge
COPY xds_server ./xds_server
COPY templates ./templates
COPY deploy/docker/entrypoint.sh /usr/local/bin/consul-xds-bridge-entrypoint
COPY deploy/docker/healthcheck.py /usr/local/lib/consul-xds-bridge/healthcheck.py
RUN pip install . && rm -rf /src \
    && chmod 0755 /usr/local/bin/consul-xds-bridge-entrypoint \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin bridge

WORKDIR /
USER 10001
EXPOSE 18000 9102
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "/usr/local/lib/consul-xds-bridge/healthcheck.py"]
ENTRYPOINT ["consul-xds-bridge-entrypoint"]
CMD ["serve"]
