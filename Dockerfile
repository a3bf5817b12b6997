# racksmith in a container: `docker compose up -d` (see docker-compose.yml). DHCP and TFTP need
# the host's network (broadcasts on the rack's L2 segment), so the container runs with host
# networking and NET_BIND_SERVICE, NET_RAW and NET_ADMIN; the data directory is a volume.

# ── build: compile TypeScript, keep only the production dependencies ──────────────────────
FROM node:20-bookworm-slim AS build
WORKDIR /src
# better-sqlite3 (and ssh2's optional cpu-features) compile when no prebuilt binary matches.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci
COPY . .
RUN npm run build \
 && npm prune --omit=dev \
 && mkdir -p boot-templates autoinstall

# ── runtime ───────────────────────────────────────────────────────────────────────────────
FROM node:20-bookworm-slim
# ipxe: the boot binaries TFTP serves (/usr/lib/ipxe); ipmitool: BMC power control;
# openssh-client: ssh-keygen/ssh for operators debugging node access from inside;
# busybox-static, fdisk, e2fsprogs, zstd, kmod, cpio: the deploy agent's build (racksmith agent
# build; its kernel comes with apt-get download); qemu-utils: qcow2 images converted to raw;
# nginx-light: racksmith's own artifacts front (RACKSMITH_ARTIFACTS_NGINX_PORT, docs/artifacts.md).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ipxe ipmitool openssh-client ca-certificates \
      busybox-static fdisk e2fsprogs zstd efibootmgr kmod cpio qemu-utils nginx-light \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/racksmith
ENV NODE_ENV=production \
    RACKSMITH_DATA_DIR=/var/lib/racksmith \
    RACKSMITH_TFTP_ROOT=/usr/lib/ipxe
# Everything racksmith reads at run time, and nothing else: the compiled server and console
# scripts, the console's page and stylesheet, the three template folders (iPXE scripts, seeds
# and role configs, kubeadm configurations) and the artifacts front's server block.
# test/docker-image.test.ts assembles exactly these lines into a fresh folder and drives
# racksmith from it.
COPY --from=build /src/package.json /src/package-lock.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/server ./dist/server
COPY --from=build /src/dist/web ./dist/web
COPY --from=build /src/web/index.html ./web/index.html
COPY --from=build /src/web/assets ./web/assets
COPY --from=build /src/boot-templates ./boot-templates
COPY --from=build /src/autoinstall ./autoinstall
COPY --from=build /src/kubeadm-templates ./kubeadm-templates
COPY --from=build /src/agent ./agent
COPY --from=build /src/packaging/nginx ./packaging/nginx
RUN ln -s /opt/racksmith/dist/server/cli.js /usr/local/bin/racksmith \
 && chmod 0755 /opt/racksmith/dist/server/cli.js \
 && mkdir -p /var/lib/racksmith /var/lib/racksmith-artifacts \
 && chmod 0700 /var/lib/racksmith \
 && chmod 0755 /var/lib/racksmith-artifacts
# The data (store, keys) and the installer artifacts apart: an artifacts front reads the second.
VOLUME ["/var/lib/racksmith", "/var/lib/racksmith-artifacts"]
EXPOSE 8080/tcp 67/udp 69/udp 4011/udp
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD node -e "fetch('http://127.0.0.1:' + (process.env.RACKSMITH_HTTP_PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"
ENTRYPOINT ["racksmith"]
CMD ["serve"]
