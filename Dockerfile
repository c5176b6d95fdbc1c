# streamdrift service image (used by docker-compose.yml)
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY detectors ./detectors
COPY stream ./stream
RUN pip install --no-cache-dir .
EXPOSE 9108
ENTRYPOINT ["streamdrift"]
CMD ["run", "--config", "/etc/streamdrift/streamdrift.toml"]
