# The bot image: examples/recorder_bot (replace it with your own bot's binary), built in a
# Rust image, run in a slim Debian with nothing else. No Docker engine runs where appmedia is
# developed, so this file is kept minimal and conventional; see docs/deploy.md.
#
#   docker build -t appmedia-bot .
#   docker run --rm -p 9441:9441 --env-file bot.env appmedia-bot

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libasound2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --example recorder_bot \
 && install -D target/release/examples/recorder_bot /out/appmedia-bot

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/appmedia appmedia \
 && install -d -o appmedia -g appmedia /var/lib/appmedia/recordings
COPY --from=build /out/appmedia-bot /usr/local/bin/appmedia-bot
USER 10001:10001
WORKDIR /var/lib/appmedia
ENV APPMEDIA_LISTEN=0.0.0.0:9441 \
    APPMEDIA_MEDIA_BIND_IP=0.0.0.0 \
    APPMEDIA_RECORDINGS_DIR=/var/lib/appmedia/recordings
EXPOSE 9441/tcp
# SIGTERM drains: not ready, no new calls, calls end or are hung up at APPMEDIA_DRAIN_SECS.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/appmedia-bot"]
