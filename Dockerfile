# One image holding the binaries: the operator (/manager), the per-tenant ingest
# worker (/ingest-worker) and the webhook front door of a shared Meta app
# (/frontdoor). Static (CGO_ENABLED=0), distroless, non-root.
FROM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w" -o /out/manager ./cmd/manager && \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w" -o /out/ingest-worker ./cmd/ingest-worker && \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w" -o /out/frontdoor ./cmd/frontdoor

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/manager /manager
COPY --from=build /out/ingest-worker /ingest-worker
COPY --from=build /out/frontdoor /frontdoor
USER 65532:65532
ENTRYPOINT ["/manager"]
