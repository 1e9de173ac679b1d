# jira-sync container image.
#
#   docker build -t jira-sync .
#   docker run --env-file .env jira-sync              # `jira-sync run`: the daemon
#   docker run --env-file .env jira-sync check        # any other subcommand
#
# Stages: `chef` (the toolchain and cargo-chef), `planner` (the dependency recipe),
# `build` (dependencies first, in their own cached layer, then the binary), and the runtime:
# distroless with glibc, CA certificates and tzdata, no shell, running as a non-root user.
# The SQL is checked at run time (no `query!` macros), so no sqlx offline data is needed.

FROM rust:1.95-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
COPY crates ./crates
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
# Only Cargo.toml/Cargo.lock shape this layer: a source change rebuilds the binary, not the
# dependencies.
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin jira-sync
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
COPY crates ./crates
COPY migrations ./migrations
COPY config ./config
RUN cargo build --release --locked --bin jira-sync

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/jira-sync /usr/local/bin/jira-sync
# The documented defaults; the binary also carries them, this copy is for reading and for a
# mounted override beside it. Settings come from JIRA_SYNC__SECTION__KEY variables, DATABASE_URL
# and, for secrets, files such as /run/secrets/jira_api_token (jira.api_token_file).
COPY config /etc/jira-sync/config
WORKDIR /etc/jira-sync
# distroless's `nonroot` user, by number so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
ENV JIRA_SYNC__LOG__FORMAT=json \
    JIRA_SYNC__SERVER__LISTEN=0.0.0.0:9464
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["jira-sync", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["jira-sync"]
CMD ["run"]
