# The image kubebook's scheduled jobs run (`kubebook schedule`, default image kubebook:<version>).
#
#   docker build -t registry.example.com/kubebook:0.1.0 .
#   docker push registry.example.com/kubebook:0.1.0
#   kubebook schedule etcd/snapshot --cron "0 */6 * * *" --image registry.example.com/kubebook:0.1.0 ...
#
# It holds this checkout's kubebook (installed from source, so the image matches the runbooks it
# carries), the runbooks, and etcdutl (the snapshot runbook verifies every snapshot with it).
# Versions come from kubebook/versions.py; keep ETCD_VERSION equal to versions.ETCD.

ARG GO_IMAGE=golang:1.26-bookworm
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${GO_IMAGE} AS etcdutl
ARG ETCD_VERSION=v3.6.16
RUN CGO_ENABLED=0 GOBIN=/out go install go.etcd.io/etcd/etcdutl/v3@${ETCD_VERSION}

FROM ${PYTHON_IMAGE}
COPY --from=etcdutl /out/etcdutl /usr/local/bin/etcdutl
COPY pyproject.toml README.md /src/
COPY kubebook /src/kubebook
COPY widgets /src/widgets
COPY runbooks /opt/kubebook/runbooks
RUN pip install --no-cache-dir /src && rm -rf /src \
    && python -m ipykernel install --sys-prefix --name python3
# runbooks are found here; the job's volumes hold HOME (/tmp), outputs and records (/var/lib/kubebook)
ENV KUBEBOOK_RUNBOOKS=/opt/kubebook/runbooks \
    KUBEBOOK_BIN_DIR=/usr/local/bin \
    PYTHONDONTWRITEBYTECODE=1
# the CronJob sets the user (65532, or root for etcd jobs that read kubeadm's 0600 keys)
USER 65532:65532
ENTRYPOINT ["kubebook"]
CMD ["list"]
