FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY geofence geofence
COPY eta eta
COPY dispatcher_feed dispatcher_feed
COPY simulators simulators
RUN pip install --no-cache-dir .
EXPOSE 8080
ENTRYPOINT ["fieldtrack"]
CMD ["run", "--http", "0.0.0.0:8080"]
