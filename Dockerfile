# The daemon next to an exchange account. Keys come from the environment at run time, state
# (accounts, orders, fills) lives in the /app/var volume:
#   docker run -v opdaemon-state:/app/var -e KRAKEN_API_KEY -e KRAKEN_API_SECRET opdaemon
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY backend backend
COPY services services
RUN pip install --no-cache-dir .
COPY config config
COPY data data
RUN useradd --create-home opdaemon && mkdir -p /app/var && chown opdaemon /app/var
USER opdaemon
VOLUME ["/app/var"]
# run-operation handles SIGTERM itself, also as PID 1: docker stop ends the runs cleanly within
# shutdown_timeout_seconds (default 5 s, under Docker's 10 s grace) and prints the summaries.
STOPSIGNAL SIGTERM
ENTRYPOINT ["run-operation", "--data-dir", "/app/var"]
CMD ["config/operations/multi_strategy_operation.yaml"]
