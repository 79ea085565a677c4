# The postwire binary in a small image: `docker build -t postwire .` (see docs/deployment.md).
# The build stage compiles the release binary; the image holds it and CA certificates only.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p postwire --bin postwire

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/postwire --create-home postwire
COPY --from=build /src/target/release/postwire /usr/local/bin/postwire
USER postwire
WORKDIR /var/lib/postwire
# The API listens on all interfaces inside the container; publish the port you choose.
ENV POSTWIRE_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["postwire"]
CMD ["serve"]
