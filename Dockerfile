# QCluster agent image: a static binary on an empty base, run as a
# non-root user. Build and run (one peer; deploy/compose runs three):
#
#   docker build -t qcluster .
#   docker run --rm -v "$PWD/server_a.json:/etc/qcluster/qcluster.json:ro" -p 7001:7001/tcp -p 7001:7001/udp qcluster
#
# The one port carries the HTTP API (and the dashboard at /ui/), raft
# (TCP) and gossip (TCP and UDP).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO_ENABLED=0: a static binary, which runs on the empty final image.
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/qcluster ./cmd/qcluster \
 && mkdir -p /out/data /out/etc/qcluster \
 && echo 'qcluster:x:65532:65532:qcluster:/var/lib/qcluster:/sbin/nologin' > /out/passwd \
 && echo 'qcluster:x:65532:' > /out/group

FROM scratch
COPY --from=build /out/passwd /etc/passwd
COPY --from=build /out/group /etc/group
COPY --from=build /out/qcluster /usr/local/bin/qcluster
COPY --from=build --chown=65532:65532 /out/data /var/lib/qcluster
COPY --from=build /out/etc/qcluster /etc/qcluster
USER 65532:65532
WORKDIR /var/lib/qcluster
VOLUME /var/lib/qcluster
EXPOSE 7001/tcp 7001/udp
ENTRYPOINT ["/usr/local/bin/qcluster"]
CMD ["agent", "--config", "/etc/qcluster/qcluster.json"]
