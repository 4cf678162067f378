# Gwanje control room / collector image. One image, the command picks the role:
#   docker run gwanje                      -> embedded demo (broker, simulated sites, DuckDB, UI :8050)
#   docker run gwanje python app.py collect
#   docker run gwanje gunicorn -w 2 -b 0.0.0.0:8050 runtime.wsgi:server
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
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
COPY config ./config

RUN useradd --system --uid 10001 gwanje && mkdir -p /data && chown gwanje /data
USER gwanje
VOLUME ["/data"]
EXPOSE 8050
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,os; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GWANJE_PORT','8050'), timeout=4)"
CMD ["python", "app.py"]
