# The itsup image for a registry: the same image `itsup apply` builds locally when the engine
# lacks `proxy.itsupImage` (src/deploy/image.rs): no base image in the result, only the stripped
# binary as /usr/local/bin/itsup (the entrypoint), the libraries `ldd` lists, and /tmp.
#
#   docker build -t registry.example.com/itsup:$(cargo pkgid | cut -d'#' -f2) .
#
# The build stage pulls `rust` and runs cargo against crates.io, so this needs a registry and the
# network: it cannot be built on a machine without them. There, `itsup apply` (or a copy of the
# binary on any host with Docker) builds the image from the executable itself.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
 && strip target/release/itsup \
 && mkdir -p /rootfs/tmp /rootfs/usr/local/bin \
 && chmod 1777 /rootfs/tmp \
 && cp target/release/itsup /rootfs/usr/local/bin/itsup \
 && for lib in $(ldd target/release/itsup | grep -oE '/[^ ]+' | sort -u); do \
      mkdir -p "/rootfs$(dirname "$lib")" && cp -L "$lib" "/rootfs$lib"; \
    done

FROM scratch
COPY --from=build /rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["/usr/local/bin/itsup"]
CMD ["--help"]
