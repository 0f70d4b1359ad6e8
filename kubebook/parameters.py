"""Typed runbook parameters: semantic types, checked before a kernel starts and again inside it.

A runbook's ``parameters`` cell starts by importing these types and declares each parameter
with one of them, a default and a help comment::

    from kubebook.parameters import *  # parameter types; values are checked before any other cell runs
    node: NodeName = "k8s-slave1"  # node to taint
    timeout: Seconds = 120  # how long to wait for the rollout
    source: Literal["live", "snapshot"] = "live"  # where to read from
    admin_password: Secret = ""  # passed out of band, never written into the notebook

The same checks run in two places, so every way of running a runbook gets them:

- ``kubebook run`` (:mod:`kubebook.runner`) reads the declarations from the notebook file and
  refuses bad input before any kernel starts (exit 2, nothing run);
- inside the kernel (plain papermill, JupyterLab, nbval) the import above installs a guard: before
  any cell other than a parameters cell runs, every declared value is checked and converted in
  place (``"false"`` becomes ``False``); a bad value rejects the cell with one line.

Secret parameters (:data:`Secret`, and helm :data:`Values`, which may hold passwords) never enter
the notebook: ``kubebook run`` injects ``***`` and hands the values to the kernel in a 0600 file
named by ``$KUBEBOOK_SECRETS_FILE``, removed after the run; ``$KUBEBOOK_SECRET_<NAME>`` works
for any runner. Inside the kernel each secret value is registered with :mod:`kubebook.safety`,
which masks it in every output the kernel sends.
"""
from __future__ import annotations

import ast
import io
import ipaddress
import json
import math
import os
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from .errors import ParameterError
from . import safety

MASK = safety.MASK
SECRETS_FILE_ENV = "KUBEBOOK_SECRETS_FILE"
SECRET_ENV_PREFIX = "KUBEBOOK_SECRET_"
IMPORT_LINE = "from kubebook.parameters import *"

_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_CONFIRM_ITEM = re.compile(r"^([a-z][a-z0-9-]*/)?[A-Za-z0-9]([A-Za-z0-9._:-]*[A-Za-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


class Invalid(ValueError):
    """A value does not fit a type; the message says why, without the word 'parameter'."""


# ---------------------------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------------------------

class Type:
    """A parameter type: converts a CLI string or a Python value, or raises :class:`Invalid`.

    ``empty_ok``: ``""`` means "not set" (the convention for optional strings) and is accepted
    when the parameter's default is ``""``. ``secret``: the value travels out of band.
    """

    name = "value"
    secret = False

    def __repr__(self) -> str:
        return self.name

    def convert(self, value: Any) -> Any:
        raise NotImplementedError

    def examples_of_bad(self) -> list[Any]:
        """Values of the right Python type that this type refuses (the adversarial suite's seeds)."""
        return []


class _Str(Type):
    name = "str"

    def convert(self, value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"{value!r} is not a string")
        if "\x00" in value:
            raise Invalid("contains a NUL byte")
        return value

    def examples_of_bad(self) -> list[Any]:
        return ["a\x00b"]


class _Bool(Type):
    name = "bool"

    def convert(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise Invalid(f"{value!r} is not a boolean (true/false, yes/no, 1/0)")

    def examples_of_bad(self) -> list[Any]:
        return ["maybe", "2", "tru", ""]


@dataclass(frozen=True, repr=False)
class Int(Type):
    """An integer within ``[minimum, maximum]``."""

    minimum: int | None = None
    maximum: int | None = None
    name: str = "int"

    def convert(self, value: Any) -> int:
        if isinstance(value, bool):
            raise Invalid(f"{value!r} is not an integer")
        if isinstance(value, float):
            if not value.is_integer():
                raise Invalid(f"{value!r} is not an integer")
            value = int(value)
        elif isinstance(value, str):
            try:
                value = int(value.strip(), 0)
            except ValueError:
                raise Invalid(f"{value!r} is not an integer") from None
        elif not isinstance(value, int):
            raise Invalid(f"{value!r} is not an integer")
        if self.minimum is not None and value < self.minimum:
            raise Invalid(f"{value} is below {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise Invalid(f"{value} is above {self.maximum}")
        return value

    def examples_of_bad(self) -> list[Any]:
        bad: list[Any] = ["three", "2.5", True]
        if self.minimum is not None:
            bad.append(self.minimum - 1)
        if self.maximum is not None:
            bad.append(self.maximum + 1)
        return bad


@dataclass(frozen=True, repr=False)
class Float(Type):
    """A finite number within ``[minimum, maximum]``; ``positive`` excludes 0."""

    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    name: str = "float"

    def convert(self, value: Any) -> float:
        if isinstance(value, bool):
            raise Invalid(f"{value!r} is not a number")
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise Invalid(f"{value!r} is not a number") from None
        if not math.isfinite(number):
            raise Invalid(f"{value!r} is not a finite number")
        if self.positive and number <= 0:
            raise Invalid(f"{value!r} is not positive")
        if self.minimum is not None and number < self.minimum:
            raise Invalid(f"{value!r} is below {self.minimum}")
        if self.maximum is not None and number > self.maximum:
            raise Invalid(f"{value!r} is above {self.maximum}")
        return number

    def examples_of_bad(self) -> list[Any]:
        bad: list[Any] = ["x", "nan", "inf", float("nan"), float("-inf")]
        if self.positive:
            bad += [0, -1]
        if self.minimum is not None:
            bad.append(self.minimum - 1)
        if self.maximum is not None:
            bad.append(self.maximum + 1)
        return bad


@dataclass(frozen=True, repr=False)
class Pattern(Type):
    """A string matching ``regex`` and at most ``max_length`` long (Kubernetes names and the like)."""

    regex: re.Pattern
    max_length: int
    what: str
    name: str = "pattern"
    bad: tuple = ()

    def convert(self, value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"{value!r} is not {self.what}")
        if len(value) > self.max_length:
            raise Invalid(f"{value[:20]!r}... is longer than {self.max_length} characters")
        if not self.regex.match(value):
            raise Invalid(f"{value!r} is not {self.what}")
        return value

    def examples_of_bad(self) -> list[Any]:
        return ["UPPER", "../x", "a_b", "-a", "a/b", " ", "x" * (self.max_length + 1), *self.bad]


@dataclass(frozen=True, repr=False)
class Choice(Type):
    """One of a fixed set of values (``Literal["live", "snapshot"]`` in a parameters cell)."""

    choices: tuple
    name: str = "choice"

    def convert(self, value: Any) -> Any:
        if value in self.choices and not isinstance(value, bool) or \
                (isinstance(value, bool) and any(c is value for c in self.choices)):
            return value
        if isinstance(value, str) and value.strip() in [str(c) for c in self.choices]:
            return next(c for c in self.choices if str(c) == value.strip())
        raise Invalid(f"{value!r} is not one of {', '.join(repr(c) for c in self.choices)}")

    def examples_of_bad(self) -> list[Any]:
        return ["", "none-of-these", *(str(c).upper() + "x" for c in self.choices[:1])]


class _FileName(Type):
    """One path component: no ``/``, not ``.`` or ``..``; what a runbook puts into a directory it owns."""

    name = "FileName"

    def convert(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise Invalid(f"{value!r} is not a file name")
        if "/" in value or "\x00" in value or value in (".", "..") or value.startswith("-") or len(value) > 200:
            raise Invalid(f"{value!r} is not a single file name (no '/', not '.' or '..', not starting with '-')")
        return value

    def examples_of_bad(self) -> list[Any]:
        return ["../../../x", "a/b", "..", ".", "-rf", "x\x00"]


class _Path(Type):
    """A filesystem path, ``~`` expanded; no NUL byte. Whether it exists is the runbook's business:
    a default such as kubeadm's ``/etc/kubernetes/pki/etcd/ca.crt`` exists on a control-plane node only."""

    name = "Path"

    def convert(self, value: Any) -> str:
        if not isinstance(value, str) or "\x00" in value:
            raise Invalid(f"{value!r} is not a path")
        return os.path.expanduser(value) if value else value

    def examples_of_bad(self) -> list[Any]:
        return ["a\x00b", 7]


class _Directory(_Path):
    name = "Directory"


class _File(_Path):
    name = "File"


class _Kubeconfig(_Path):
    name = "Kubeconfig"


class _RelativePath(Type):
    """A relative path that stays inside the directory it is joined to (no ``..``, not absolute)."""

    name = "RelativePath"

    def convert(self, value: Any) -> str:
        if not isinstance(value, str) or "\x00" in value or not value:
            raise Invalid(f"{value!r} is not a relative path")
        if value.startswith("/") or ".." in PurePosixPath(value).parts:
            raise Invalid(f"{value!r} leaves its directory (absolute, or has '..')")
        return value

    def examples_of_bad(self) -> list[Any]:
        return ["/etc/passwd", "../x", "a/../../b"]


class _LabelKey(Type):
    """A label or taint key: an optional DNS-subdomain prefix and ``/``, then a name of at most 63."""

    name = "LabelKey"

    def convert(self, value: Any) -> str:
        if not isinstance(value, str) or not _label_key(value):
            raise Invalid(f"{value!r} is not a label key (prefix/name)")
        return value

    def examples_of_bad(self) -> list[Any]:
        return ["", "a b", "/x", "-x", "x" * 64, "UP_per.com/x"]


@dataclass(frozen=True, repr=False)
class ListOf(Type):
    """A list whose items have type ``item``; a string ``a,b,c`` or a JSON list is accepted."""

    item: Type
    name: str = "list"

    def convert(self, value: Any) -> list:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith(("[", "{")):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    raise Invalid(f"{value!r} is not a JSON list") from None
            else:
                value = [v.strip() for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise Invalid(f"{value!r} is not a list")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(self.item.convert(item))
            except Invalid as exc:
                raise Invalid(f"item {i}: {exc}") from None
        return out

    def examples_of_bad(self) -> list[Any]:
        return [{"not": "a list"}, "[1,", *([[b] for b in self.item.examples_of_bad()[:3]])]


class _Any(Type):
    name = "any"

    def convert(self, value: Any) -> Any:
        return value


class _Dict(Type):
    name = "dict"

    def convert(self, value: Any) -> dict:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise Invalid(f"{value!r} is not a JSON object") from None
        if not isinstance(value, dict):
            raise Invalid(f"{value!r} is not a mapping")
        return value

    def examples_of_bad(self) -> list[Any]:
        return ["[1, 2]", "{", [1]]


class _Secret(_Str):
    """A secret string (a password, a token): out of band, masked everywhere."""

    name = "Secret"
    secret = True

    def examples_of_bad(self) -> list[Any]:
        return ["a\x00b", 5]


class _Values(_Dict):
    """Helm values (``{"image.tag": "1.27", "auth.adminPassword": ...}``): may hold secrets, so
    kubebook passes them out of band and helm gets them in a 0600 file, never on a command line."""

    name = "Values"
    secret = True

    def convert(self, value: Any) -> dict:
        value = super().convert(value)
        for key in value:
            if not isinstance(key, str) or not key or "\x00" in key:
                raise Invalid(f"value path {key!r} is not a helm value path")
        return value

    def examples_of_bad(self) -> list[Any]:
        return ["[1, 2]", "{", {"": 1}]


class _Taint(Type):
    """A taint as the API writes it: ``{"key": ..., "value": ..., "effect": NoSchedule|PreferNoSchedule|NoExecute}``,
    or kubectl's ``key=value:Effect``."""

    name = "Taint"

    def convert(self, value: Any) -> dict | str:
        if isinstance(value, str):
            key, _, effect = value.rpartition(":")
            name = key.split("=", 1)[0]
            if effect not in _TAINT_EFFECTS or not _label_key(name):
                raise Invalid(f"{value!r} is not a taint (key=value:Effect)")
            return value
        if not isinstance(value, dict) or set(value) - {"key", "value", "effect"}:
            raise Invalid(f"{value!r} is not a taint")
        if not _label_key(value.get("key", "")) or value.get("effect") not in _TAINT_EFFECTS:
            raise Invalid(f"{value!r} is not a taint (a valid key and an effect of {', '.join(_TAINT_EFFECTS)})")
        if len(str(value.get("value", ""))) > 63:
            raise Invalid(f"taint value of {value.get('key')!r} is longer than 63 characters")
        return value

    def examples_of_bad(self) -> list[Any]:
        return [{"key": "a", "effect": "Sometimes"}, {"key": "../x", "effect": "NoSchedule"}, "a=b", "a=b:Never"]


class _Cidr(Type):
    name = "CIDR"

    def convert(self, value: Any) -> str:
        try:
            return str(ipaddress.ip_network(str(value).strip(), strict=True))
        except ValueError:
            raise Invalid(f"{value!r} is not a network in CIDR notation (10.244.0.0/16)") from None

    def examples_of_bad(self) -> list[Any]:
        return ["10.244.0.1/16", "10.0.0.0/33", "banana"]


class _IPAddress(Type):
    name = "IPAddress"

    def convert(self, value: Any) -> str:
        try:
            return str(ipaddress.ip_address(str(value).strip()))
        except ValueError:
            raise Invalid(f"{value!r} is not an IP address") from None

    def examples_of_bad(self) -> list[Any]:
        return ["256.0.0.1", "host name", "1.2.3"]


class _Quantity(Type):
    """A Kubernetes resource quantity (``500m``, ``256Mi``, ``2``)."""

    name = "Quantity"

    def convert(self, value: Any) -> str:
        text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
        if text is None or not _QUANTITY.match(text):
            raise Invalid(f"{value!r} is not a resource quantity (500m, 256Mi, 2)")
        return text

    def examples_of_bad(self) -> list[Any]:
        return ["-1", "lots", "5 Gi", "1.5.2"]


class _Confirm(Type):
    """What a runbook may act on: the target's name, then ``kind/name`` for anything outside it,
    comma-separated (``k8s-slave1, namespace/kubebook-taints``)."""

    name = "Confirm"

    def convert(self, value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"{value!r} is not a confirmation (names separated by commas)")
        for item in split_confirm(value):
            if not _CONFIRM_ITEM.match(item) or len(item) > 300:
                raise Invalid(f"{item!r} does not name a target (name, or kind/name)")
        return value.strip()

    def examples_of_bad(self) -> list[Any]:
        return ["../etc", "node//x", "a b/c/d", "x;rm -rf /"]


def split_confirm(text: str) -> list[str]:
    return [item.strip() for item in re.split(r"[,\s]+", text or "") if item.strip()]


def _label_key(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    return bool(name) and len(name) <= 63 and bool(_QUALIFIED_NAME.match(name)) and \
        (not slash or (len(prefix) <= 253 and bool(_DNS_SUBDOMAIN.match(prefix))))  # "/x": an empty prefix


# The names a parameters cell uses. Kubernetes' own rules: namespaces are DNS-1123 labels; most
# objects (nodes, Deployments, PVs, StorageClasses...) DNS-1123 subdomains; helm releases at most 53.
Text = _Str()
Bool = _Bool()
Count = Int(minimum=0, name="Count")            # 0, 1, 2, ...
Positive = Int(minimum=1, name="Positive")      # 1, 2, ...
Port = Int(minimum=1, maximum=65535, name="Port")
Seconds = Float(positive=True, name="Seconds")  # a positive, finite duration
Fraction = Float(minimum=0.0, maximum=1.0, name="Fraction")
Label = Pattern(_DNS_LABEL, 63, name="Label", what="a DNS-1123 label (lowercase letters, digits, '-')")
Namespace = Pattern(_DNS_LABEL, 63, name="Namespace", what="a namespace name (a DNS-1123 label)")
Name = Pattern(_DNS_SUBDOMAIN, 253, name="Name", what="a Kubernetes object name (a DNS-1123 subdomain)")
NodeName = Pattern(_DNS_SUBDOMAIN, 253, name="NodeName", what="a node name (a DNS-1123 subdomain)")
Release = Pattern(_DNS_SUBDOMAIN, 53, name="Release", what="a helm release name (lowercase, at most 53 characters)")
LabelKey = _LabelKey()
Names = ListOf(Name, name="Names")
NodeNames = ListOf(NodeName, name="NodeNames")
FileName = _FileName()
Path = _Path()
Directory = _Directory()
File = _File()
Kubeconfig = _Kubeconfig()
RelativePath = _RelativePath()
Secret = _Secret()
Values = _Values()
Taint = _Taint()
Taints = ListOf(Taint, name="Taints")
CIDR = _Cidr()
CIDRs = ListOf(CIDR, name="CIDRs")
IPAddress = _IPAddress()
Quantity = _Quantity()
Confirm = _Confirm()

_BUILTINS: dict[Any, Type] = {str: Text, int: Int(), float: Float(), bool: Bool, list: ListOf(_Any()),
                              dict: _Dict()}

__all__ = ["Literal", "Text", "Bool", "Count", "Positive", "Port", "Seconds", "Fraction", "Label", "Namespace",
           "Name", "NodeName", "Release", "LabelKey", "Names", "NodeNames", "FileName", "Path", "Directory",
           "File", "Kubeconfig", "Secret", "Values", "Taint", "Taints", "CIDR", "CIDRs", "IPAddress", "Quantity",
           "Confirm", "RelativePath", "Int", "Float"]


def as_type(annotation: Any) -> Type:
    """The :class:`Type` for an annotation object (a kubebook type, a builtin, ``Literal[...]``)."""
    if isinstance(annotation, Type):
        return annotation
    if annotation in _BUILTINS:
        return _BUILTINS[annotation]
    if getattr(annotation, "__origin__", None) is Literal:
        return Choice(tuple(annotation.__args__), name="one of " + "|".join(map(str, annotation.__args__)))
    if isinstance(annotation, str):  # a string annotation: evaluate it as the parameters cell would
        return as_type(_eval_annotation(ast.parse(annotation, mode="eval").body))
    raise ParameterError(f"{annotation!r} is not a parameter type kubebook knows")


# ---------------------------------------------------------------------------------------------
# Declarations: read from a parameters cell
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Parameter:
    name: str
    type: Type
    default: Any
    help: str
    annotation: str = ""  # as written in the cell

    @property
    def secret(self) -> bool:
        return self.type.secret

    @property
    def required(self) -> bool:
        return self.default is None

    def convert(self, value: Any) -> Any:
        """``value`` as this parameter's type, or ParameterError (one line)."""
        if value is None:
            if self.default is None:
                raise ParameterError(f"parameter {self.name}: a value ({self.type.name}) is required")
            return None
        if value == "" and self.default == "":  # "" is "not set" for a parameter whose default says so
            return ""
        try:
            return self.type.convert(value)
        except Invalid as exc:
            shown = "a secret value" if self.secret else str(exc)
            raise ParameterError(f"parameter {self.name} ({self.type.name}): {shown}") from None


_ALLOWED_NODES = (ast.Name, ast.Subscript, ast.Call, ast.Constant, ast.Tuple, ast.List, ast.Load, ast.keyword,
                  ast.Attribute, ast.UnaryOp, ast.USub)


def _eval_annotation(node: ast.expr) -> Any:
    """Evaluate an annotation expression written with this module's names only (no other code)."""
    for sub in ast.walk(node):
        if not isinstance(sub, _ALLOWED_NODES):
            raise ParameterError(f"annotation {ast.unparse(node)!r} is not a parameter type")
        if isinstance(sub, ast.Attribute):
            raise ParameterError(f"annotation {ast.unparse(node)!r} is not a parameter type")
    namespace = {name: globals()[name] for name in __all__}
    namespace.update({"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict})
    try:
        return eval(compile(ast.Expression(node), "<parameters>", "eval"), {"__builtins__": {}}, namespace)
    except Exception as exc:  # noqa: BLE001 - any failure is a bad declaration
        raise ParameterError(f"annotation {ast.unparse(node)!r}: {exc}") from None


def _line_comments(source: str) -> dict[int, str]:
    comments = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError):
        pass
    return comments


def declarations(source: str) -> dict[str, Parameter]:
    """The parameters a ``parameters`` cell declares: ``name: Type = default  # help``."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ParameterError(f"parameters cell: {exc.msg} (line {exc.lineno})") from None
    comments = _line_comments(source)
    params: dict[str, Parameter] = {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr)):
            continue
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None):
            raise ParameterError(f"parameters cell line {node.lineno}: not a `name: Type = default` declaration")
        try:
            default = ast.literal_eval(node.value)
        except ValueError:
            raise ParameterError(f"parameters cell line {node.lineno}: the default of {node.target.id} "
                                 "is not a literal") from None
        name = node.target.id
        params[name] = Parameter(name=name, type=as_type(_eval_annotation(node.annotation)), default=default,
                                 help=comments.get(node.end_lineno, ""), annotation=ast.unparse(node.annotation))
    return params


def validate(params: dict[str, Parameter], values: dict[str, Any], *, where: str = "") -> dict[str, Any]:
    """Converted ``values``; raises ParameterError (one line) on the first unknown, bad or missing one."""
    prefix = f"{where}: " if where else ""
    unknown = sorted(set(values) - set(params))
    if unknown:
        raise ParameterError(f"{prefix}unknown parameter {unknown[0]!r} (known: {', '.join(params)})")
    converted = {}
    for name, value in values.items():
        try:
            converted[name] = params[name].convert(value)
        except ParameterError as exc:
            raise ParameterError(prefix + str(exc)) from None
    for p in params.values():
        effective = converted.get(p.name, p.default)
        if p.required and effective is None:
            raise ParameterError(f"{prefix}missing required parameter {p.name!r} ({p.help})")
        if p.name not in converted and p.default is not None:
            try:
                p.convert(p.default)
            except ParameterError as exc:
                raise ParameterError(f"{prefix}the default of {p.name} is invalid: {exc}") from None
    return converted


# ---------------------------------------------------------------------------------------------
# Secrets out of band
# ---------------------------------------------------------------------------------------------

def placeholder(param: Parameter, value: Any) -> Any:
    """What the notebook shows for a secret parameter's value: ``***`` (for values, per key)."""
    if isinstance(value, dict):
        return {k: MASK for k in value}
    return MASK if value not in ("", None) else value


def secret_looking_keys(values: dict) -> list[str]:
    return [k for k in values if safety.is_secret_key(str(k))]


def _from_environment(name: str) -> str | None:
    return os.environ.get(SECRET_ENV_PREFIX + name.upper())


def _secrets_file() -> dict[str, Any]:
    path = os.environ.get(SECRETS_FILE_ENV)
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError):
        return {}


def resolve_secret(param: Parameter, value: Any, resolved: dict[str, Any]) -> Any:
    """The real value of a secret parameter whose notebook value is ``value``.

    ``***`` (or a dict of ``***``): from the runner's secrets file. ``""``: from
    ``$KUBEBOOK_SECRET_<NAME>`` if set. A clear value that was not resolved here is refused (it
    would be saved in the notebook), except helm values whose keys do not look secret.
    """
    if param.name in resolved and resolved[param.name] == value:
        return value
    masked = value == MASK or (isinstance(value, dict) and value and all(v == MASK for v in value.values()))
    if masked:
        from_file = _secrets_file()
        if param.name not in from_file:
            raise ParameterError(f"parameter {param.name}: the value is passed out of band, but no secrets file "
                                 f"holds it (${SECRETS_FILE_ENV}); run it with `kubebook run` or set "
                                 f"${SECRET_ENV_PREFIX}{param.name.upper()}")
        return param.convert(from_file[param.name])
    if value in ("", None) or (isinstance(value, dict) and value == param.default):
        env = _from_environment(param.name)
        return param.convert(env) if env is not None else value
    if isinstance(value, dict) and not secret_looking_keys(value):
        return value
    raise ParameterError(f"parameter {param.name} is secret and was given in clear text, which would be saved "
                         f"with the notebook: pass it with `kubebook run --secrets-file FILE` or set "
                         f"${SECRET_ENV_PREFIX}{param.name.upper()}")


def register_secrets(value: Any) -> None:
    """Tell :mod:`kubebook.safety` to mask ``value`` (a secret, or the values of a helm values dict)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if safety.is_secret_key(str(key)) or (isinstance(item, str) and len(item) >= 8):
                safety.register_secret(str(item))
    elif isinstance(value, str) and value:
        safety.register_secret(value)


# ---------------------------------------------------------------------------------------------
# The kernel-side guard (plain papermill, JupyterLab, nbval)
# ---------------------------------------------------------------------------------------------

def _rejection(message: str) -> Exception:
    """A ParameterError that IPython treats as a rejected cell (nothing in it runs), shown as one line."""
    from IPython.core.error import InputRejected

    class InvalidParameter(ParameterError, InputRejected):
        def _render_traceback_(self):
            return [f"ParameterError: {self}"]

    return InvalidParameter(message)


@dataclass
class _Guard:
    """Checks the kernel's parameter values before every cell that is not a parameters cell.

    A parameters cell is the one importing this module (its values are the defaults) or
    papermill's injected cell (``# Parameters`` first). Every other cell is checked first.
    """

    shell: Any
    cell_kind: str = "code"
    defaults: dict = field(default_factory=dict)
    resolved: dict = field(default_factory=dict)
    unknown: list = field(default_factory=list)

    def classify(self, lines: list[str]) -> list[str]:
        """An IPython input transformer that only looks: which kind of cell is about to run."""
        text = "".join(lines)
        if IMPORT_LINE in text:
            self.cell_kind = "parameters"
        elif text.lstrip().startswith("# Parameters"):
            self.cell_kind = "injected"
        else:
            self.cell_kind = "code"
        return lines

    def visit(self, node: ast.Module) -> ast.Module:  # IPython's ast_transformers protocol
        if self.cell_kind == "injected":
            declared = self.shell.user_ns.get("__annotations__", {})
            assigned = [t.id for stmt in node.body if isinstance(stmt, ast.Assign)
                        for t in stmt.targets if isinstance(t, ast.Name)]
            self.unknown = [n for n in assigned if n not in declared]
        elif self.cell_kind == "code":
            try:
                self.check()
            except ParameterError as exc:
                raise _rejection(str(exc)) from None
        return node

    def after_cell(self, result: Any = None) -> None:
        """After the parameters cell ran, its values are the defaults (``""`` means "not set" only there)."""
        if self.cell_kind == "parameters":
            declared = self.shell.user_ns.get("__annotations__", {})
            self.defaults = {name: self.shell.user_ns.get(name) for name in declared}
            self.resolved.clear()
            self.unknown = []

    def check(self) -> None:
        ns = self.shell.user_ns
        declared = ns.get("__annotations__", {})
        if self.unknown:
            raise ParameterError(f"unknown parameter {self.unknown[0]!r} (known: {', '.join(declared)})")
        for name, annotation in declared.items():
            param = Parameter(name=name, type=as_type(annotation), default=self.defaults.get(name), help="")
            value = ns.get(name)
            if param.secret:
                value = resolve_secret(param, value, self.resolved)
                register_secrets(value)
            if value is None:
                raise ParameterError(f"missing required parameter {name!r}")
            ns[name] = param.convert(value)
            if param.secret:
                self.resolved[name] = ns[name]


_installed: _Guard | None = None


def install_guard() -> _Guard | None:
    """Install the guard in the running IPython shell (once per shell); None outside IPython."""
    global _installed
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None:
        return None
    if _installed is not None and _installed.shell is shell:
        return _installed
    # Installed by the import in a parameters cell: that cell's values are the defaults
    guard = _Guard(shell, cell_kind="parameters")
    shell.input_transformers_cleanup.append(guard.classify)
    shell.ast_transformers.append(guard)
    shell.events.register("post_run_cell", guard.after_cell)
    safety.scrub_kernel_output(shell)
    _installed = guard
    return guard


install_guard()
