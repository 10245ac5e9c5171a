# FieldTrack gateway / API node. One image for every role:
#   docker run fieldtrack run --role worker|api|all ...   (options also from FIELDTRACK_*)

# Stage 1: the live map's browser assets (Leaflet), exactly as package-lock.json
# pins them, vendored by the same script `make install` runs. Nothing is loaded
# from a CDN at run time, so the map works without Internet access.
FROM node:20-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/build_assets.sh scripts/
RUN bash scripts/build_assets.sh

# Stage 2: the Python package, with the vendored assets inside it.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY geofence geofence
COPY eta eta
COPY dispatcher_feed dispatcher_feed
COPY simulators simulators
COPY --from=assets /src/dispatcher_feed/static/vendor dispatcher_feed/static/vendor
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /app fieldtrack
USER fieldtrack
EXPOSE 8080
ENV FIELDTRACK_HTTP=0.0.0.0:8080
# /readyz: broker subscribed (workers) and Redis answering; 503 otherwise.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)" || exit 1
ENTRYPOINT ["fieldtrack"]
CMD ["run"]
