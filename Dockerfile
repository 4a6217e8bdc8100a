# The daemon next to an exchange account. Keys come from the environment at run time:
#   docker run -e KRAKEN_API_KEY -e KRAKEN_API_SECRET opdaemon
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY backend backend
COPY services services
RUN pip install --no-cache-dir .
COPY config config
COPY data data
RUN useradd --create-home opdaemon
USER opdaemon
# SIGTERM (docker stop) ends the runs cleanly and prints the summaries.
STOPSIGNAL SIGTERM
ENTRYPOINT ["run-operation"]
CMD ["config/operations/multi_strategy_operation.yaml"]
