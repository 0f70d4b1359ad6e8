"""Helm from Python: the CLI wrapper, releases under a plan's rules, the chart tour, masking.

- :mod:`.cli` — :class:`Helm`, the helm CLI bound to one cluster and namespace; values reach helm in
  a 0600 values file only, never on a command line;
- :mod:`.release` — :class:`Release`: install, upgrade, rollback, uninstall as plan steps, a release
  that existed put back to its recorded revision at clean-up, rollouts watched with a diagnosis;
- :mod:`.manifests` — rendered manifests and values split, tabulated, diffed, masked;
- :mod:`.tour` — the course's tour: chart layout, one template at a time, values precedence, OCI push/pull;
- :mod:`.registry` — a loopback OCI registry for ``helm push``/``pull oci://``.

Masking follows :mod:`kubebook.safety`'s one secret-key rule (re-exported here)::

    target = connect.target(kubeconfig, context, lab)
    web = Release(plan, target.helm(namespace="kubebook-helm"), "eladmin-web")
    web.install("", {"replicaCount": 2})
"""
from __future__ import annotations

from ..safety import MASK, is_secret_key, mask, mask_text, mask_values, write_private  # noqa: F401
from .cli import (Helm, HelmError, default_home, describe_values, error_line, nest, parse_lint,  # noqa: F401
                  pushed_or_pulled, validate_release_name, values_file)
from .manifests import (describe_change, manifest_diff, mask_manifest, objects_table, refs,  # noqa: F401
                        release_summary, safe_manifest, split_manifest, values_table)
from .release import Release, merge  # noqa: F401
from .tour import (CHARTS, TOUR, chart_dir, chart_layout, precedence, pull_and_compare, push_twice,  # noqa: F401
                   render_one, server_check, template_source, work_dir, write_values_file)

__all__ = ["CHARTS", "Helm", "HelmError", "MASK", "Release", "TOUR", "chart_dir", "chart_layout", "default_home",
           "describe_change", "describe_values", "error_line", "is_secret_key", "manifest_diff", "mask",
           "mask_manifest", "mask_text", "mask_values", "merge", "nest", "objects_table", "parse_lint", "precedence",
           "pull_and_compare", "push_twice", "pushed_or_pulled", "refs", "release_summary", "render_one",
           "safe_manifest", "server_check", "split_manifest", "template_source", "validate_release_name",
           "values_file", "values_table", "work_dir", "write_private", "write_values_file"]
