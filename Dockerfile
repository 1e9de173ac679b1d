# A first cut of the container image: release build, small runtime, non-root user.
# (The cached dependency layer, healthcheck and compose stack come with the deploy work.)
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY config ./config
COPY benches ./benches
RUN cargo build --release --locked --bin jira-sync

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 jira-sync
COPY --from=build /src/target/release/jira-sync /usr/local/bin/jira-sync
COPY config /etc/jira-sync/config
WORKDIR /etc/jira-sync
USER 10001
ENV JIRA_SYNC__LOG__FORMAT=json
ENTRYPOINT ["jira-sync"]
CMD ["sync", "--once"]
