# srvd in a container (README.md, "Deployment"):
#   docker build -t srvd .
#   docker run -d --name srvd -p 53:53/udp -p 53:53/tcp \
#     -v /srv/srvd/etc:/etc/srvd:ro -v srvd-state:/var/lib/srvd srvd
# A slim Debian 12 Python, pinned to a release tag (pin its digest too for builds that must not
# move: docker pull, then FROM python:...@sha256:<digest>).
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# srvd runs as this user, never as root; a fixed uid so volume permissions can be set from outside
RUN groupadd --system --gid 5353 srvd \
    && useradd --system --uid 5353 --gid srvd --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin srvd \
    && install -d -o srvd -g srvd -m 0700 /var/lib/srvd \
    && install -d -o srvd -g srvd -m 0750 /run/srvd \
    && install -d -m 0755 /etc/srvd /etc/srvd/domains.d

WORKDIR /usr/src/srvd
# requirements.lock pins every runtime dependency and everything they pull in to the versions the
# test suite passed with; installing it beside the package (".") means pip resolves srvd's
# dependency ranges against those pins alone, so a rebuild next month gets the same versions.
COPY requirements.lock pyproject.toml README.md ./
COPY srvd/ srvd/
COPY twisted/ twisted/
RUN pip install --no-cache-dir -r requirements.lock .

# The production template: it serves the domains of /etc/srvd/domains.d/*.yaml (none in the
# image). Mount your own /etc/srvd over it (read-only is enough); state_dir is /var/lib/srvd.
COPY config/srvd.yaml /etc/srvd/srvd.yaml
VOLUME ["/var/lib/srvd"]

# not the source tree: `python -m srvd` (how the workers are started) must import the installed
# package
WORKDIR /
USER 5353:5353

# Port 53 as a non-root user: Docker (20.10 and later) sets net.ipv4.ip_unprivileged_port_start=0
# in a container's own network namespace, so no capability is needed (not with --network host).
# 9153 is /metrics, served only if the configuration says `metrics: 0.0.0.0:9153` (the default is
# 127.0.0.1:9153, unreachable from outside the container).
EXPOSE 53/udp 53/tcp 9153/tcp

# one real question: the SOA of the configuration's first zone, read without building the index
# (the domains only up to the first one: cheap at a million); with no domain at all (nothing
# mounted over the template), a REFUSED for the root proves srvd answers
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["srvd", "health", "-c", "/etc/srvd/srvd.yaml", "--server", "127.0.0.1:53"]

# --listen replaces the configured addresses: the container always answers on its port 53 (IPv4;
# add --listen "[::]:53" on a Docker network with IPv6)
ENTRYPOINT ["srvd"]
CMD ["serve", "-c", "/etc/srvd/srvd.yaml", "--listen", "0.0.0.0:53"]
