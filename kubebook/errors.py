"""Exceptions raised by kubebook. One root class; the CLI maps them to exit codes."""


class KubebookError(Exception):
    """Root of every error kubebook raises on purpose."""

    exit_code = 1


class ParameterError(KubebookError):
    """A runbook parameter is unknown, of the wrong type, or missing."""

    exit_code = 2


class RunbookNotFound(KubebookError):
    exit_code = 2


class BuildError(KubebookError):
    """An upstream binary could not be built; the message names the module and why."""


class LabError(KubebookError):
    """The local lab could not be started, stopped or found."""


class ConfirmationRequired(KubebookError):
    """A change was requested with a confirmation that does not name exactly its targets."""

    exit_code = 2


class RunbookFailed(KubebookError):
    """A runbook cell raised; carries the executed notebook path."""

    def __init__(self, message: str, *, output_path: str | None = None,
                 cell_index: int | None = None, ename: str | None = None,
                 evalue: str | None = None):
        super().__init__(message)
        self.output_path = output_path
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
