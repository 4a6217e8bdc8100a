# The daemon next to an exchange account. Keys come from the environment at run time, state
# (accounts, orders, fills) lives in the /app/var volume, the status server listens on 8080
# inside the container (publish it on the host's loopback only, see docker-compose.yml):
#   docker run -v opdaemon-state:/app/var -p 127.0.0.1:8080:8080 -e KRAKEN_API_KEY -e KRAKEN_API_SECRET opdaemon
# The entry point is run-operation alone, so what follows the image name is its command line:
#   docker run opdaemon validate config/operations/multi_strategy_operation.yaml
#   docker run -v opdaemon-state:/app/var opdaemon sweep config/sweeps/dca_grid.yaml --out /app/var/sweeps/dca_grid
# Another operation keeps the state volume and the status server (HEALTHCHECK) with the same flags:
#   docker run ... opdaemon config/operations/OTHER.yaml --data-dir /app/var --http 0.0.0.0:8080
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY backend backend
COPY services services
RUN pip install --no-cache-dir .
COPY config config
COPY data data
RUN useradd --create-home opdaemon && mkdir -p /app/var /app/sweeps && chown opdaemon /app/var /app/sweeps
USER opdaemon
VOLUME ["/app/var"]
EXPOSE 8080
# Ready = every feed fresh and no run failed (GET /readyz answers 200); the start-up check of a
# live environment may take up to startup_timeout_seconds (default 30).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=4).status != 200)"]
# run-operation handles SIGTERM itself, also as PID 1: docker stop ends the runs cleanly within
# shutdown_timeout_seconds (default 5 s, under Docker's 10 s grace) and prints the summaries.
STOPSIGNAL SIGTERM
ENTRYPOINT ["run-operation"]
CMD ["config/operations/multi_strategy_operation.yaml", "--data-dir", "/app/var", "--http", "0.0.0.0:8080"]
