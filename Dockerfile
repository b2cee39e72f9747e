# Rivulet engine image.
# Base: Debian 13 (glibc 2.41) with Node 24, the version the test suite's second pass runs (.ci/node24).
# Its uWebSockets.js build (@btc-vision/uwebsockets.js, glibc >= 2.38) loads there, and Node 24 has
# listen({ reusePort }), so each worker binds its own socket and a dead worker is replaced in place.
# Node 20 (end of life) would need NODE_IMAGE=node:20.20.2-bookworm-slim and the shared-descriptor strategy.
ARG NODE_IMAGE=node:24.22.3-trixie-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
COPY dashboard ./dashboard
# `npm ci` runs the `prepare` script, which compiles src/ to dist/ and builds the dashboard into dist/dashboard.
RUN npm ci --no-audit --no-fund && npm prune --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/dist/dashboard ./dist/dashboard
# The image's unprivileged `node` user (uid 1000) runs the engine; it must be able to read the
# certificate and key files. Binding 443/80 as that user needs
# net.ipv4.ip_unprivileged_port_start=0 (set in compose.yaml) or CAP_NET_BIND_SERVICE.
USER node
EXPOSE 443/tcp 80/tcp
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
CMD ["engine", "--config", "/etc/rivulet/engine.yaml"]
