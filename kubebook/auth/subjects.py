"""Who a request is made as: a User, a Group or a ServiceAccount, written as kubectl writes them.

    Subject.parse("User:luffy-admin")
    Subject.parse("Group:system:masters")
    Subject.parse("ServiceAccount:luffy:luffy-pods-admin")   # or system:serviceaccount:luffy:luffy-pods-admin
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import KubebookError

RBAC_GROUP = "rbac.authorization.k8s.io"
AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"
SA_PREFIX = "system:serviceaccount:"
KINDS = ("User", "Group", "ServiceAccount")


@dataclass(frozen=True, order=True)
class Subject:
    kind: str
    name: str
    namespace: str = ""
    # groups a User carries besides system:authenticated (from its certificate's O fields, or
    # `kubectl --as-group`): e.g. system:nodes for a kubelet
    member_of: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise KubebookError(f"subject kind {self.kind!r}: use one of {', '.join(KINDS)}")
        if not self.name:
            raise KubebookError(f"{self.kind} subject without a name")
        if self.kind == "ServiceAccount" and not self.namespace:
            raise KubebookError(f"ServiceAccount {self.name!r} needs a namespace (ServiceAccount:NS:NAME)")

    @classmethod
    def parse(cls, text: "str | Subject") -> "Subject":
        """``User:NAME``, ``Group:NAME``, ``ServiceAccount:NS:NAME``, ``system:serviceaccount:NS:NAME``;
        a bare name is a User."""
        if isinstance(text, Subject):
            return text
        text = text.strip()
        if text.startswith(SA_PREFIX):
            namespace, _, name = text.removeprefix(SA_PREFIX).partition(":")
            return cls("ServiceAccount", name, namespace)
        kind, sep, rest = text.partition(":")
        if not sep or kind not in KINDS:
            return cls("User", text)
        if kind == "ServiceAccount":
            namespace, _, name = rest.partition(":")
            return cls(kind, name, namespace)
        return cls(kind, rest)

    @classmethod
    def from_rbac(cls, subject: dict, *, binding_namespace: str = "") -> "Subject":
        """A subject as a RoleBinding lists it (an SA without namespace is in the binding's)."""
        return cls(subject["kind"], subject["name"],
                   subject.get("namespace") or (binding_namespace if subject["kind"] == "ServiceAccount" else ""))

    def __str__(self) -> str:
        text = f"ServiceAccount:{self.namespace}:{self.name}" if self.namespace else f"{self.kind}:{self.name}"
        return text + (f" (groups {','.join(self.member_of)})" if self.member_of else "")

    @property
    def username(self) -> str:
        """The user name the apiserver sees ("" for a Group)."""
        if self.kind == "ServiceAccount":
            return f"{SA_PREFIX}{self.namespace}:{self.name}"
        return self.name if self.kind == "User" else ""

    def groups(self, *, authenticated: bool = True) -> list[str]:
        """The groups an authenticated request of this subject carries.

        ``authenticated`` adds ``system:authenticated``, as the apiserver does for every
        authenticated (or impersonated) request, so answers agree with ``kubectl auth can-i --as``.
        """
        groups = list(self.member_of)
        if self.kind == "Group":
            groups.append(self.name)
        if self.kind == "ServiceAccount":
            groups += ["system:serviceaccounts", f"system:serviceaccounts:{self.namespace}"]
        if authenticated and AUTHENTICATED not in groups:
            groups.append(AUTHENTICATED)
        return groups

    def matches(self, other: "Subject") -> bool:
        """Whether a binding to ``other`` applies to this subject (directly or through a group)."""
        if other == self:
            return True
        if other.kind == "Group":
            return other.name in self.groups()
        if other.kind == "User" and self.kind == "ServiceAccount":
            return other.name == self.username
        return False

    def as_rbac(self) -> dict:
        """The subject as a RoleBinding lists it."""
        if self.kind == "ServiceAccount":
            return {"kind": "ServiceAccount", "name": self.name, "namespace": self.namespace}
        return {"kind": self.kind, "name": self.name, "apiGroup": RBAC_GROUP}


def parse_all(texts) -> list[Subject]:
    """Subjects from a list or a comma-separated string."""
    if isinstance(texts, str):
        texts = [t for t in texts.split(",") if t.strip()]
    return [Subject.parse(t) for t in texts]
