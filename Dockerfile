# syntax=docker/dockerfile:1
# Build:  docker build -t sinergi .
# Run:    docker run -e REDIS_URL=redis://… -e JWT_SECRET=… -p 8080:8080 sinergi
# The image has no redis-server: REDIS_URL is required (see docs/DEPLOYMENT.md).

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Install scripts stay off, as package.json's allowScripts says: argon2 and msgpackr-extract come
# prebuilt per platform, and ws runs without bufferutil where no prebuilt binary fits.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY shared ./shared
COPY server ./server
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY config ./config
# The code stays root-owned and read-only to the process. data/ is writable only so that a run without
# REDIS_URL stops with "redis-server was not found … or set REDIS_URL" instead of a permission error.
RUN mkdir data && chown node:node data
USER node
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + process.env.PORT + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/server/main.js"]
