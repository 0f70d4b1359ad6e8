"""Access matrix: SubjectAccessReviews asked concurrently versus the same checks one by one, in one run.

    python bench/access_matrix.py [--subjects 20] [--resources 20] [--verbs 8] [--workers 8] [--rounds 3]

Starts (or reuses) the lab ``bench-auth``, gives a few of the subjects Roles, RoleBindings and
ClusterRoleBindings (so answers differ), then computes the matrix subjects × resources × verbs
(20 × 20 × 8 = 3,200 reviews by default) with ``workers`` reviews in flight, and again one by
one. Rounds alternate the order so machine noise hits both alike; the answers must be identical.
Prints each round, the medians and the ratio.
"""
from __future__ import annotations

import argparse
import statistics

from kubebook import lab as labs
from kubebook.auth import access, rbac, tokens

RESOURCES = ["pods", "pods/log", "pods/exec", "services", "endpoints", "configmaps", "secrets",
             "serviceaccounts", "persistentvolumeclaims", "events", "deployments.apps", "replicasets.apps",
             "statefulsets.apps", "daemonsets.apps", "jobs.batch", "cronjobs.batch",
             "horizontalpodautoscalers.autoscaling", "ingresses.networking.k8s.io",
             "roles.rbac.authorization.k8s.io", "leases.coordination.k8s.io",
             "networkpolicies.networking.k8s.io", "poddisruptionbudgets.policy"]
VERBS = list(access.DEFAULT_VERBS)
NAMESPACE = "bench"


def subjects(count: int) -> list[str]:
    """A mix of users, groups and ServiceAccounts, with built-in identities among them."""
    fixed = ["Group:system:masters", "User:system:kube-scheduler", "User:system:kube-controller-manager",
             "ServiceAccount:kube-system:replicaset-controller"]
    made = [f"User:dev-{i}" if i % 3 == 0 else f"Group:team-{i}" if i % 3 == 1 else f"ServiceAccount:{NAMESPACE}:app-{i}"
            for i in range(max(0, count - len(fixed)))]
    return (fixed + made)[:count]


def grant(api, names: list[str]) -> None:
    """Different rights for different subjects: namespace admin, readers, a cluster-wide viewer."""
    rbac.ensure_namespace(api, NAMESPACE)
    readers = rbac.role("reader", namespace=NAMESPACE, rules=[rbac.rule(["get", "list", "watch"], ["pods", "services"]),
                                                            rbac.rule(["get", "list"], ["deployments"], groups=("apps",))])
    objects = [readers, rbac.cluster_role("bench-viewer", rules=[rbac.rule(["get", "list", "watch"], ["*"],
                                                                          groups=("", "apps", "batch"))])]
    for i, subject in enumerate(n for n in names if "dev-" in n or "team-" in n or ":app-" in n):
        if subject.startswith("ServiceAccount:"):
            tokens.ensure_service_account(api, NAMESPACE, subject.rsplit(":", 1)[1])
        if i % 3 == 0:
            objects += rbac.namespace_admin(subject, namespace=NAMESPACE, name=f"admin-{i}")
        elif i % 3 == 1:
            objects.append(rbac.role_binding(f"reader-{i}", namespace=NAMESPACE, role="reader", subjects=[subject]))
        else:
            objects.append(rbac.cluster_role_binding(f"bench-viewer-{i}", cluster_role="bench-viewer",
                                                     subjects=[subject]))
    rbac.apply_all(api, objects)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--resources", type=int, default=20)
    parser.add_argument("--verbs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    who, what, how = subjects(args.subjects), RESOURCES[:args.resources], VERBS[:args.verbs]
    cells = len(who) * len(what) * len(how)
    with labs.running("bench-auth", nodes=1, timeout=180) as lab:
        api = lab.api_client()
        api.configuration.connection_pool_maxsize = max(args.workers, 10)
        api = type(api)(api.configuration)  # a fresh pool sized for the workers
        grant(api, who)
        access.wait_allowed(api, who[-1], "get", "pods", namespace=NAMESPACE)
        access.checks(api, who[:2], what[:2], how[:2], namespace=NAMESPACE)  # warm: discovery, connections
        sequential, concurrent = [], []
        for i in range(args.rounds):
            order = [("sequential", 1), ("concurrent", args.workers)]
            results = {}
            for label, workers in (order if i % 2 == 0 else order[::-1]):
                table, seconds = access.timed(access.checks, api, who, what, how, namespace=NAMESPACE, workers=workers)
                results[label] = table
                (sequential if workers == 1 else concurrent).append(seconds)
            # the reasons may name different bindings (the authorizer's iteration order varies); answers may not
            decisions = [results[k][["subject", "verb", "resource", "allowed"]] for k in ("sequential", "concurrent")]
            assert decisions[0].equals(decisions[1]), "the two ways gave different answers"
            allowed = int(results["concurrent"]["allowed"].sum())
            print(f"round {i + 1}: {cells} checks ({len(who)} subjects x {len(what)} resources x {len(how)} verbs, "
                  f"{allowed} allowed): one by one {sequential[-1]:.2f}s, {args.workers} concurrent "
                  f"{concurrent[-1]:.2f}s")
        s, c = statistics.median(sequential), statistics.median(concurrent)
        print(f"median: one by one {s:.2f}s ({cells / s:.0f} checks/s), concurrent {c:.2f}s ({cells / c:.0f} checks/s), "
              f"ratio {s / c:.2f}x faster")
    return [{"figure": f"access matrix: {cells} SubjectAccessReviews one by one / {args.workers} concurrent",
             "value": f"{s:.2f} s / {c:.2f} s", "ratio": s / c, "goal": "> 1x (concurrent faster)", "met": s / c > 1}]


if __name__ == "__main__":
    main()
