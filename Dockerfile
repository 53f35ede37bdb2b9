# The Clawdet control plane: one image for the web app, the stream proxy, the workers and the
# operator CLI.
#   docker build -t clawdet .
# pg_dump/pg_restore (for `clawdet backup`) come from Debian bookworm's postgresql-client (15):
# keep the database server at 15 (compose.yaml does) or install a matching client.
FROM python:3.11-slim-bookworm

ARG PULUMI_VERSION=3.259.0
# The sha256 of pulumi-v${PULUMI_VERSION}-linux-x64.tar.gz: its line in the release's
# pulumi-${PULUMI_VERSION}-checksums.txt, published with it at
# https://github.com/pulumi/pulumi/releases/download/v${PULUMI_VERSION}/pulumi-${PULUMI_VERSION}-checksums.txt
# Give it with --build-arg (docker compose build --build-arg PULUMI_SHA256=...) or write it here,
# next to the version: the build stops without it, and when the download does not match it.
ARG PULUMI_SHA256=
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PULUMI_SKIP_UPDATE_CHECK=true \
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true \
    XDG_CACHE_HOME=/opt/clawdet/cache \
    CLAWDET_DATA_DIR=/data \
    LOG_FORMAT=json

RUN printf '%s' "${PULUMI_SHA256}" | grep -Eqx '[0-9a-f]{64}' || { \
      echo "PULUMI_SHA256 must be the sha256 of pulumi-v${PULUMI_VERSION}-linux-x64.tar.gz (64 hex digits)," \
           "from pulumi-${PULUMI_VERSION}-checksums.txt of the release; got '${PULUMI_SHA256}'." >&2; \
      exit 1; }
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl postgresql-client tini \
 && rm -rf /var/lib/apt/lists/* \
 && curl -fsSL --retry 3 --max-time 300 -o /tmp/pulumi.tar.gz \
    https://get.pulumi.com/releases/sdk/pulumi-v${PULUMI_VERSION}-linux-x64.tar.gz \
 && echo "${PULUMI_SHA256}  /tmp/pulumi.tar.gz" | sha256sum -c - \
 && tar -xzf /tmp/pulumi.tar.gz -C /usr/local/lib \
 && rm /tmp/pulumi.tar.gz \
 && ln -s /usr/local/lib/pulumi/* /usr/local/bin/ \
 && useradd --system --create-home --home-dir /home/clawdet --uid 10001 clawdet

WORKDIR /app
# Dependencies first (cached while only the code changes).
COPY pyproject.toml README.md ./
RUN python -m venv .venv \
 && .venv/bin/pip install --no-cache-dir --upgrade pip \
 && .venv/bin/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && .venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

COPY Pulumi.yaml ./
COPY programs ./programs
COPY cloud-init ./cloud-init
COPY toolchain ./toolchain
COPY db ./db
COPY clawdet ./clawdet
COPY webapp ./webapp
COPY streams ./streams
COPY sandbox ./sandbox
RUN .venv/bin/pip install --no-cache-dir --no-deps . \
 && .venv/bin/python -m toolchain ensure \
 && mkdir -p /data /app/stacks \
 && chown -R clawdet:clawdet /data /app/stacks /opt/clawdet

USER clawdet
ENV PATH=/app/.venv/bin:$PATH
VOLUME ["/data", "/app/stacks"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD curl -fsS http://127.0.0.1:8000/api/health || exit 1
ENTRYPOINT ["tini", "--"]
CMD ["clawdet", "web", "--host", "0.0.0.0"]
