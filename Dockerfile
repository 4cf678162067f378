# Gwanje: one image for every role; the command picks it.
#   docker run gwanje                                   embedded demo (broker, simulated sites, DuckDB, UI :8050)
#   docker run gwanje python app.py collect --instance a --health-port 9100
#   docker run gwanje python app.py simulate --health-port 9100
#   docker run gwanje gunicorn -w 2 -b 0.0.0.0:8050 runtime.wsgi:server
#   docker run gwanje python -m runtime.pki /pki ...   the broker's CA, certificates and password file
# Non-root (uid 10001), no compilers, no test dependencies. HEALTHCHECK: GET /healthz of the
# process — the UI's port (GWANJE_PORT), or GWANJE_HEALTH_PORT for collect and simulate.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GWANJE_CONFIG_DIR=/app/config \
    GWANJE_DATA_DIR=/data \
    GWANJE_HOST=0.0.0.0 \
    GWANJE_PORT=8050

WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY app.py ./
COPY gwanje ./gwanje
COPY collectors ./collectors
COPY storage ./storage
COPY simulator ./simulator
COPY alerts ./alerts
COPY dashboards ./dashboards
COPY runtime ./runtime
# quality AI: the models and the trainer collect starts as a child process (docs/quality.md)
COPY quality ./quality
COPY config ./config

RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin gwanje \
    && mkdir -p /data && chown gwanje /data \
    && python -m compileall -q /app
USER 10001
VOLUME ["/data"]
EXPOSE 8050
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["python", "-m", "runtime.healthcheck"]
CMD ["python", "app.py"]
