# The rtml control room for docker-compose.yml: rtml and the Streamlit app, no Kafka inside.
# It reaches the compose cluster through RTML_BOOTSTRAP_SERVERS, so it starts no broker and
# needs no system JDK. Build and run it with `docker compose up -d` (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# /app belongs to the user because rtml keeps its state in ./.rtml (RTML_HOME) by default.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin rtml \
    && install -d -o rtml -g rtml /app

# An installed rtml finds lab_app/ in the working directory, so the source tree stays in /app.
WORKDIR /app
COPY --chown=rtml:rtml . /app
RUN pip install . && rm -rf build ./*.egg-info

USER rtml
EXPOSE 8501
CMD ["rtml", "ui", "--headless"]
