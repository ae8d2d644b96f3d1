# A stand-in for the public python:3.11-slim-bookworm: Debian's python3 (3.11) in a virtual
# environment first on PATH, so `python`, `pip install` and the installed scripts behave as in
# the public image (Debian's own python3 refuses `pip install` into the system, PEP 668).
ARG DEBIAN_IMAGE=jobengine-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/python
# The machine's CA bundle (docker/local/engine.sh puts it in the context), added to Debian's:
# pip then reaches PyPI through the TLS inspection of the machine's network, if any.
COPY host-ca-certificates.crt /usr/local/share/ca-certificates/host-bundle.crt
RUN update-ca-certificates >/dev/null 2>&1
ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
