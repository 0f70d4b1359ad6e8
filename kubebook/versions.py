"""Every upstream version kubebook builds or expects, pinned in one place.

Change a version here and the next ``kubebook lab build`` builds a new cache
directory for it; the old one stays until removed by hand.
"""

KUBERNETES = "v1.35.4"
# Staging modules (k8s.io/api, k8s.io/client-go, ...) are published as v0.<minor>.<patch>.
KUBERNETES_STAGING = "v0." + KUBERNETES.removeprefix("v1.")
ETCD = "v3.6.16"
KWOK = "v0.7.0"

# Tools some runbooks use, built on first use (not needed to start the lab).
HELM = "v3.22.0"             # the course's Helm 3 commands, unchanged
METRICS_SERVER = "v0.8.0"    # sigs.k8s.io/metrics-server, for HPA

# The Go toolchain that builds them: etcd v3.6.16 needs go >= 1.26 (Kubernetes 1.35: 1.25).
GO_MIN = (1, 26)


def bundle_name() -> str:
    """Name of the cache directory holding one consistent set of binaries."""
    return f"k8s-{KUBERNETES}_etcd-{ETCD}_kwok-{KWOK}"
