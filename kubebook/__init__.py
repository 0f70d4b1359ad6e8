"""kubebook: Jupyter runbooks for Kubernetes operations, and the library that does their work."""
import sys as _sys

if "ipykernel" in _sys.modules:  # inside a runbook's kernel
    # result tables also go out as data (kubebook.show), and show reasons and messages whole: pandas
    # would cut every cell at 50 characters ("0/3 nodes are available: 1 node(s) had untoler...").
    # Whole cells can hold a whole token, so every message the kernel sends is masked from here on
    # (the parameters import does it too; a notebook that only imports kubebook gets it as well).
    import pandas as _pandas
    from IPython import get_ipython as _get_ipython
    from .safety import scrub_kernel_output as _scrub
    from .show import register_table_output as _register

    _register()
    _pandas.set_option("display.max_colwidth", None)
    _scrub(_get_ipython())
