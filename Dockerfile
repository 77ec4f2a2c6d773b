# DEPLOY_02: the ARK runtime image, one image for Redis, the API and the four agents.
# No registry is reachable: the base is the lab's debootstrap image (Debian 12 with python3,
# python3-venv, redis-server, curl), imported with `docker import` by `invoke compose.up`
# (ark_ops/compose/engine.py). Python packages come only from the hash-checked wheelhouse
# built from requirements.lock (ark_ops/deploy/wheelhouse.py): the build needs no network.
ARG BASE_IMAGE=ark-base:bookworm
FROM ${BASE_IMAGE}

# A fixed uid/gid: the secret files on the host are made readable by exactly this id.
ARG ARK_UID=10001
RUN groupadd --system --gid "${ARK_UID}" ark \
 && useradd --system --uid "${ARK_UID}" --gid ark --home-dir /var/lib/ark \
        --no-create-home --shell /usr/sbin/nologin ark

COPY build/wheelhouse/ /opt/ark/wheelhouse/
# The lab image's own pip.conf points at the hosts' wheel directory: not this build's.
RUN python3 -m venv /opt/ark/venv \
 && PIP_CONFIG_FILE=/dev/null /opt/ark/venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check \
        --no-index --find-links /opt/ark/wheelhouse --require-hashes --no-deps \
        -r /opt/ark/wheelhouse/runtime.lock \
 && rm -rf /opt/ark/wheelhouse/*.whl \
 && install -d -o ark -g ark -m 0750 /var/lib/ark /var/log/ark /var/lib/ark-redis /run/ark \
 && install -d -o ark -g ark -m 0700 /run/redis

COPY docker/entrypoint docker/redis-start docker/healthcheck /usr/local/lib/ark/

ENV PATH=/opt/ark/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER ark:ark
WORKDIR /var/lib/ark
ENTRYPOINT ["/usr/local/lib/ark/entrypoint"]
CMD ["ark", "version"]
