# CypherGate gateway: a slim, non-root image. OPA runs beside it as a sidecar (see README).
FROM python:3.11-slim AS build
WORKDIR /src
# The runtime dependencies exactly as locked, each checked against its SHA-256 (requirements.lock,
# made by `uv pip compile --generate-hashes`; see the README to refresh it).
COPY requirements.lock ./
RUN python -m venv /opt/cyphergate \
 && /opt/cyphergate/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock
# Then the gateway itself, from this source, adding no dependency of its own.
COPY pyproject.toml README.md ./
COPY proxy ./proxy
RUN /opt/cyphergate/bin/pip install --no-cache-dir --no-deps . \
 && /opt/cyphergate/bin/pip check
# The codec's hot modules compiled to C by mypyc (proxy/codec/native.py), with a compiler and
# mypy that stay in this stage: the image gets the extension modules, not the tools.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && python -m venv /opt/mypyc \
 && /opt/mypyc/bin/pip install --no-cache-dir 'mypy==2.4.1' \
 && /opt/cyphergate/bin/python -m proxy.codec.native --python /opt/mypyc/bin/python

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/cyphergate/bin:$PATH
RUN useradd --system --uid 10001 --home-dir /var/lib/cyphergate --create-home cyphergate
COPY --from=build /opt/cyphergate /opt/cyphergate
USER 10001
WORKDIR /var/lib/cyphergate
VOLUME ["/var/lib/cyphergate"]
# 8080: the HTTP door; 7687: the Bolt door (on when server.bolt_port is set, as here).
EXPOSE 8080 7687
ENV CYPHERGATE_SERVER__HOST=0.0.0.0 \
    CYPHERGATE_SERVER__BOLT_PORT=7687 \
    CYPHERGATE_AUDIT__PATH=/var/lib/cyphergate/audit.sqlite3 \
    CYPHERGATE_NEO4J__LEASES_PATH=/var/lib/cyphergate/leases.sqlite3
ENTRYPOINT ["cyphergate", "serve"]
CMD ["--config", "/etc/cyphergate/gateway.toml"]
