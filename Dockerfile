# consul-xds-bridge: serves Consul's catalog to Envoy over gRPC xDS v3.
#   docker build -t consul-xds-bridge .
#   docker run --rm -p 18000:18000 -p 9102:9102 \
#     -e CONSUL_HTTP_ADDR=http://consul:8500 consul-xds-bridge
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CONSUL_XDS_BRIDGE_XDS_LISTEN=0.0.0.0:18000 \
    CONSUL_XDS_BRIDGE_ADMIN_LISTEN=0.0.0.0:9102

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY xds_server ./xds_server
COPY templates ./templates
RUN pip install . && rm -rf /src \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin bridge

WORKDIR /
USER 10001
EXPOSE 18000 9102
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9102/healthz', timeout=2)"]
ENTRYPOINT ["consul-xds-bridge"]
CMD ["serve"]
