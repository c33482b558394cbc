# syntax=docker/dockerfile:1
# Build: compile TypeScript and install production dependencies only.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev

# Runtime: non-root, only what the gateway needs (dist, production deps, the compiled default policy).
FROM node:24-bookworm-slim
ENV NODE_ENV=production LBAC_CONFIG=/etc/lbac-gateway/gateway.yaml LBAC_LISTEN=0.0.0.0:8080
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY wasm ./wasm
COPY examples/gateway.yaml /etc/lbac-gateway/gateway.yaml
# Numeric (the image's "node" user): Kubernetes can only verify runAsNonRoot for a numeric USER.
USER 1000:1000
# 8080: the gateway (LBAC_LISTEN); 9091: the admin listener (/metrics) when server.adminListen is set.
EXPOSE 8080 9091
# GET /healthz on LBAC_LISTEN's port, plain HTTP or (server.tls) HTTPS.
HEALTHCHECK --interval=10s --timeout=5s --retries=3 CMD ["node", "bin/healthcheck.js"]
ENTRYPOINT ["node", "bin/lbac-gateway.js"]
CMD ["serve"]
