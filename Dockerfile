# clinic_bot as one image with the Procfile's three process types (Dokku, Render, Fly, a VPS).
#   web (default):  docker run -p 8000:8000 --env-file env IMAGE
#   worker:         docker run --env-file env IMAGE clinic-bot worker
#   release:        docker run --env-file env IMAGE clinic-bot db upgrade   (before each deploy)
# Dokku reads /app/Procfile from the image; tests/e2e/test_deploy_files.py keeps the labels,
# the CMD and the Procfile saying the same commands.
# Any image with Python 3.11+ and pip on PATH will do; the official slim one by default.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="clinic_bot" \
      clinic-bot.process.release="clinic-bot db upgrade" \
      clinic-bot.process.web="gunicorn -c gunicorn.conf.py wsgi:app" \
      clinic-bot.process.worker="clinic-bot worker"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000 \
    CLINIC_BOT_INSTANCE=/data \
    PROMETHEUS_MULTIPROC_DIR=/tmp/clinic-bot-metrics

WORKDIR /app
RUN groupadd --system --gid 10001 clinic \
    && useradd --system --uid 10001 --gid clinic --home-dir /app --shell /usr/sbin/nologin clinic \
    && mkdir -p /data && chown clinic:clinic /data

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
COPY clinic_bot/__init__.py clinic_bot/__init__.py
RUN pip install . && pip uninstall -y clinic-bot

COPY clinic_bot ./clinic_bot
COPY migrations ./migrations
COPY alembic.ini wsgi.py gunicorn.conf.py Procfile ./
# Editable, so the package finds its migrations/ beside it (clinic_bot.settings.PROJECT_DIR).
RUN pip install --no-deps -e . && python -m compileall -q clinic_bot

USER clinic
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=4)"
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
