"""Authentication and RBAC: who a credential is, what it may do, and how to grant or audit that.

One module per concern:

- :mod:`.certificates`: kubeconfig contexts and client certificates (CN = user, O = groups), verified against the CA
- :mod:`.users`: a new user's key, CSR (or CA-key signing) and self-contained kubeconfig, as plan steps;
  why an approved CSR stays unsigned
- :mod:`.rbac`: Role/ClusterRole/RoleBinding/ClusterRoleBinding from parameters, applied as plan steps;
  reverse lookups; cluster-admin audit
- :mod:`.access`: SubjectAccessReview checks and access matrices; raw requests as a credential (``probe``);
  whether the run's own credential may do a step (``require``)
- :mod:`.tokens`: ServiceAccounts and TokenRequest tokens (plan steps) that are used but never shown
- :mod:`.nodes`: node identities and what the Node authorizer allows
"""
from .access import Resource, can, checks, matrix, probe
from .subjects import Subject

__all__ = ["Resource", "Subject", "can", "checks", "matrix", "probe"]
