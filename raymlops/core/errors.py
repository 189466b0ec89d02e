"""User-facing errors: one clear paragraph, an exit status, no traceback unless debugging."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from raymlops.core.origin import running_command

T = TypeVar("T")

DEBUG_ENV = "RAYMLOPS_DEBUG"
EXIT_USER_ERROR = 2
EXIT_INCOMPLETE = 3


class UserError(Exception):
    """Something the user can fix: the message names the bad value and what to do instead."""


class Incomplete(Exception):
    """The job ran and kept everything it logged, but not all of it succeeded (trials failed after their
    retries, or never ran): it must not end as if it had."""


def cli(main: Callable[[list[str]], T]) -> Callable[..., T]:
    """Wrap an entry point so a UserError prints one paragraph and exits 2, an Incomplete one and exits 3.

    Set RAYMLOPS_DEBUG=1 to see the full traceback instead.
    """

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> T:
        args = sys.argv[1:] if argv is None else argv
        try:
            with running_command(main.__module__):
                return main(args)
        except UserError as err:
            if os.environ.get(DEBUG_ENV):
                raise
            from raymlops.core.redact import redact_text

            logging.shutdown()
            print(f"raymlops: error: {redact_text(str(err))}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_USER_ERROR) from None
        except Incomplete as err:
            from raymlops.core.redact import redact_text

            logging.shutdown()
            print(f"raymlops: incomplete: {redact_text(str(err))}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_INCOMPLETE) from None

    return wrapper
