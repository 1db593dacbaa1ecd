# syntax=docker/dockerfile:1.7
# One Dockerfile for the three apps; the target names the app:
#   docker build --target api              -t petcover/api .
#   docker build --target events-publisher -t petcover/events-publisher .
#   docker build --target events-consumer  -t petcover/events-consumer .
# (`docker compose up -d --build` builds all three; the shared stages run once.)
# infra/test/dockerfile.test.ts runs this file's install and deploy steps
# without a Docker engine.

# Pinned to a patch release, the one CI tests with (node --version there).
ARG NODE_IMAGE=node:20.20.2-bookworm-slim

# --- deps: exactly what `pnpm install` reads, so this layer is rebuilt only
# when dependencies change: lockfile, workspace (catalog, patchedDependencies),
# patches/, and every workspace package's package.json.
FROM ${NODE_IMAGE} AS deps
ENV PNPM_HOME=/pnpm PATH=/pnpm:$PATH CI=true COREPACK_ENABLE_DOWNLOAD_PROMPT=0
# corepack runs the pnpm of package.json's packageManager field.
RUN corepack enable
WORKDIR /repo
COPY pnpm-lock.yaml pnpm-workspace.yaml package.json .npmrc ./
COPY patches/ patches/
COPY apps/api/package.json apps/api/
COPY apps/events-publisher/package.json apps/events-publisher/
COPY apps/events-consumer/package.json apps/events-consumer/
COPY packages/outbox/package.json packages/outbox/
COPY packages/domain/package.json packages/domain/
COPY packages/service-kit/package.json packages/service-kit/
COPY chaos/package.json chaos/
COPY bench/package.json bench/
COPY infra/package.json infra/
RUN --mount=type=cache,id=pnpm-store,target=/pnpm/store pnpm install --frozen-lockfile

# --- build: sources on top, build the three apps and their workspace
# dependencies, then `pnpm deploy` each into /out/<app>: its package.json,
# dist/ (the "files" of each package) and production node_modules only.
FROM deps AS build
COPY . .
RUN pnpm exec turbo run build --filter=./apps/*
# --legacy: copy workspace dependencies (with their dist/) instead of
# requiring inject-workspace-packages for the whole workspace.
RUN --mount=type=cache,id=pnpm-store,target=/pnpm/store \
    for app in api events-publisher events-consumer; do \
      pnpm --filter=@petcover/$app deploy --prod --legacy /out/$app || exit 1; \
    done

# --- runtime: node, tini and a non-root user; each app stage adds its
# deployed package and nothing else.
FROM ${NODE_IMAGE} AS runtime
# tini is PID 1: it forwards SIGTERM to node and reaps zombies, which node
# as PID 1 does not (Kubernetes has no `docker run --init`).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o 1000 -g 1000 /var/lib/petcover/documents
ENV NODE_ENV=production
WORKDIR /app
# /var/lib/petcover/documents (the api's DOCUMENT_STORE_DIR in compose and
# Kubernetes) belongs to the app user, so a fresh named volume mounted there does too.
# uid:gid 1000 is the image's `node` user; numeric, so Kubernetes can verify
# runAsNonRoot without a passwd lookup.
USER 1000:1000
# SIGTERM is the graceful stop: finish the work in hand, release leases, exit 0.
STOPSIGNAL SIGTERM
# Each app serves /healthz on PORT (api) or HEALTH_PORT (publisher, consumer);
# the app stages set the one they read.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || process.env.HEALTH_PORT) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]

FROM runtime AS api
COPY --from=build --chown=1000:1000 /out/api/package.json /app/
COPY --from=build --chown=1000:1000 /out/api/dist/ /app/dist/
COPY --from=build --chown=1000:1000 /out/api/node_modules/ /app/node_modules/
ENV PORT=3000
EXPOSE 3000
# node directly (no npm/pnpm wrapper), so SIGTERM reaches the app itself.
CMD ["node", "dist/main.js"]

FROM runtime AS events-publisher
COPY --from=build --chown=1000:1000 /out/events-publisher/package.json /app/
COPY --from=build --chown=1000:1000 /out/events-publisher/dist/ /app/dist/
COPY --from=build --chown=1000:1000 /out/events-publisher/node_modules/ /app/node_modules/
ENV HEALTH_PORT=9101
EXPOSE 9101
# --max-semi-space-size=4 (MiB) caps V8's young generation: at tens of
# thousands of events/s the default lets it grow by ~30 MiB of RSS for no
# measurable throughput (pnpm bench, drain: peak RSS 148 → 121 MiB).
CMD ["node", "--max-semi-space-size=4", "dist/main.js", "start"]

FROM runtime AS events-consumer
COPY --from=build --chown=1000:1000 /out/events-consumer/package.json /app/
COPY --from=build --chown=1000:1000 /out/events-consumer/dist/ /app/dist/
COPY --from=build --chown=1000:1000 /out/events-consumer/node_modules/ /app/node_modules/
ENV HEALTH_PORT=9102
EXPOSE 9102
CMD ["node", "--max-semi-space-size=4", "dist/main.js", "start"]
