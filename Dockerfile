# The trigger-sanity worker image (used by docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY streams ./streams
COPY policies ./policies
RUN pip install .

RUN useradd --create-home --uid 10001 app && mkdir -p /data && chown app /data
USER app
ENV TRIGGER_SANITY_DATA_DIR=/data
EXPOSE 6066
ENTRYPOINT ["trigger-sanity"]
CMD ["worker"]
