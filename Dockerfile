# The chat example as an app image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dialogue_fastapi ./dialogue_fastapi
COPY examples ./examples
# only the extras this image uses: Redis fan-out, PostgreSQL history, Prometheus metrics
RUN pip install --no-cache-dir ".[redis,postgres,metrics]"
ENV HOST=0.0.0.0 PORT=8000
EXPOSE 8000
CMD ["python", "examples/chat/app.py"]
