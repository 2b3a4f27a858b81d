# syntax=docker/dockerfile:1
# One image, four roles: `api` (gunicorn), `consumer` (process_outcomes), `worker` (scheduled
# reports and alerts: run_worker) and `live` (uvicorn: /api/live/); see entrypoint.sh.

# The dashboard's and GraphiQL's front-end packages, pinned by package-lock.json (Node 24 LTS: 20 reached end of life).
FROM node:24.21.0-bookworm-slim AS assets
WORKDIR /assets
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts \
    && mkdir vendor \
    && cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css vendor/ \
    && cp node_modules/react/umd/react.production.min.js node_modules/react-dom/umd/react-dom.production.min.js vendor/ \
    && sed '/sourceMappingURL=/d' node_modules/graphiql/graphiql.min.js > vendor/graphiql.min.js \
    && sed '/sourceMappingURL=/d' node_modules/graphiql/graphiql.min.css > vendor/graphiql.min.css

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
# Every dependency ships a manylinux wheel, so no compiler is needed even here.
COPY requirements.txt .
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --only-binary=:all: -r requirements.txt
COPY . .
COPY --from=assets /assets/vendor outcomes/static/outcomes/vendor
# collectstatic with production settings (the manifest storage); it reads no secret.
RUN DEBUG=false DB_PASSWORD=unused /opt/venv/bin/python manage.py collectstatic --noinput

FROM python:3.11.14-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    DEBUG=false
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=10001:10001 /app /app
USER 10001:10001
EXPOSE 8000 9108
ENTRYPOINT ["./entrypoint.sh"]
CMD ["api"]
