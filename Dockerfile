# otelwatch: multi-stage build, small runtime image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY kibana ./kibana
RUN cargo build --profile dist --locked && strip target/dist/otelwatch

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/otelwatch --create-home otelwatch
COPY --from=build /src/target/dist/otelwatch /usr/local/bin/otelwatch
COPY pipeline.yaml /etc/otelwatch/pipeline.yaml
USER otelwatch
WORKDIR /var/lib/otelwatch
EXPOSE 4317 4318 8888
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8888/healthz || exit 1
ENTRYPOINT ["otelwatch"]
CMD ["run", "--config", "/etc/otelwatch/pipeline.yaml"]
