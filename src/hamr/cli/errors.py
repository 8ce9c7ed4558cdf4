"""Every failure reaches the user as one line and exit status 2; --debug shows the traceback."""

from __future__ import annotations

import sys
import traceback

from rich.console import Console
from rich.text import Text

from hamr.errors import HamrError, first_line

EXIT_USAGE = 2
stderr = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


def report(exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, HamrError):
        message = str(exc)
    else:
        message = f"internal error: {first_line(exc)}"
        if not debug:
            message += " (run with --debug for the traceback)"
    stderr.print(Text("error: ", style="bold red") + Text(message))
    return EXIT_USAGE
