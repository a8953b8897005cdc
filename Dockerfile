# syntax=docker/dockerfile:1
# Build with dev dependencies, run with production ones only.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
COPY scripts ./scripts
RUN npm run build

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    TOKEND_STATE_FILE=/var/lib/tokend/tokens.json \
    TOKEND_LISTEN=0.0.0.0:4242 \
    TOKEND_API_KEY_FILE=/run/secrets/tokend_api_key
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
RUN mkdir -p /var/lib/tokend && chown node:node /var/lib/tokend && chmod 0700 /var/lib/tokend \
    && ln -s /app/dist/cli/main.js /usr/local/bin/tokend
USER node
VOLUME ["/var/lib/tokend"]
EXPOSE 4242
# Listening on 0.0.0.0 needs an API key: tokend refuses to start without one.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "/app/dist/cli/main.js", "status", "--listen", "127.0.0.1:4242"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["serve"]
