# nbatlas: the CLI and the GraphQL API in one image. Configuration only through NBATLAS_*
# environment variables (see README). `docker compose up` runs it against pgvector/pgvector.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    NBATLAS_HOME=/var/lib/nbatlas \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /opt/nbatlas
COPY pyproject.toml README.md ./
COPY db ./db
COPY ingest ./ingest
COPY api ./api
COPY analysis ./analysis
COPY migrations ./migrations
RUN pip install . \
    && useradd --system --create-home --home-dir /var/lib/nbatlas nbatlas

USER nbatlas
WORKDIR /var/lib/nbatlas
EXPOSE 8000
CMD ["nbatlas", "serve", "--host", "0.0.0.0", "--port", "8000"]
