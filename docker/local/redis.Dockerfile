# A stand-in for the public redis image: Debian's redis-server, run as `redis` in /data, with
# the public image's entrypoint rule (no config file given: --protected-mode no, since the
# container's network is the boundary).
ARG DEBIAN_IMAGE=jobengine-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir /data && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
USER redis
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
