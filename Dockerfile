# One image per program: docker build --build-arg PROGRAM=interceptor .
# Build stage: Deno from the npm package (the same pinned version as
# everywhere else) compiles the program into one executable. Final stage:
# distroless with glibc (cc), non-root, no shell.
ARG DENO_VERSION=2.9.6

FROM node:22-bookworm-slim AS build
ARG DENO_VERSION
ARG PROGRAM
RUN test -n "$PROGRAM" || (echo "set --build-arg PROGRAM=interceptor|scaler|operator" && exit 1)
RUN npm install -g --allow-scripts=deno "deno@${DENO_VERSION}" || npm install -g "deno@${DENO_VERSION}"
WORKDIR /src
COPY deno.json deno.lock ./
COPY shared/ shared/
COPY proto/ proto/
COPY build/ build/
COPY interceptor/ interceptor/
COPY scaler/ scaler/
COPY operator/ operator/
RUN deno install --frozen --entrypoint "${PROGRAM}/main.ts"
RUN deno run --allow-read --allow-write --allow-run --allow-env build/compile.ts "${PROGRAM}"

FROM gcr.io/distroless/cc-debian12:nonroot
ARG PROGRAM
COPY --from=build /src/dist/${PROGRAM} /app
USER 65532:65532
ENV DENO_NO_UPDATE_CHECK=1
ENTRYPOINT ["/app"]
