"""The command line of `bin/train`: flags in; on bad input, one line out and exit 2.

Exit statuses: 0 done; 2 bad input (flags, data, teachers, config: `error: <what is
wrong and how to fix it>` on stderr, no traceback); 3 training diverged (a non-finite
loss term; the last good checkpoint is kept); 4 a worker of a `--strategy=multi_worker` job
was lost (rerun every worker: the job resumes); 1 anything unexpected (a bug: the full
traceback). `--debug` (or absl's `--verbosity=1`) prints the traceback in every case.
"""

import sys
import traceback

from absl import app, flags

from diverse_distill.pipeline.finite_loss_guard import NonFiniteLossError
from diverse_distill.pipeline.workers import WorkerLostError

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_WORKER_LOST = 4

# What bad input raises: the data module's MovieLensFormatError (a ValueError) and
# MovieLensFileNotFoundError (a FileNotFoundError), the config's and the library's
# ValueErrors, a missing file or folder (OSError), a missing optional wheel (ImportError).
BAD_INPUT_ERRORS = (ValueError, OSError, ImportError, flags.Error, app.UsageError)


def one_line(error):
    """The error's message on one line, without absl's `ERROR::` prefix."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text.removeprefix("ERROR:: ")


def _debug_requested(argv=None):
    if argv is not None:  # flags not parsed yet
        verbosity = [a[len("--verbosity="):] for a in argv if a.startswith("--verbosity=")]
        return any(a in ("--debug", "--debug=true", "--debug=True") for a in argv) or any(
            v.lstrip("-").isdigit() and int(v) >= 1 for v in verbosity)
    return bool(flags.FLAGS["debug"].value) or flags.FLAGS["verbosity"].value >= 1


def fail(error, code=EXIT_BAD_INPUT, debug=False, hint=""):
    """Prints `error: <message>` (after the traceback with `debug`) and exits with `code`."""
    if debug:
        traceback.print_exception(error)
    sys.stdout.flush()
    print(f"error: {one_line(error)}{hint}", file=sys.stderr, flush=True)
    sys.exit(code)


def parse_flags(argv):
    """absl's parser, reporting a bad flag on one line (with absl's 'Did you mean')."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(error, debug=_debug_requested(argv),
             hint=f" ({argv[0]} --helpfull lists every flag.)")


def run(main, positional_args=False):
    """Runs `main(argv)` as `app.run` does, mapping known errors to one line and an exit status.

    Args:
        main: callable taking argv (the program name, then the positional arguments).
        positional_args: bool. Accept positional arguments. Defaults to `False`.
    """

    def wrapped(argv):
        try:
            if len(argv) > 1 and not positional_args:
                raise app.UsageError(
                    f"unexpected arguments {argv[1:]}: every option is a flag, --name=value."
                )
            return main(argv)
        except NonFiniteLossError as error:
            fail(error, EXIT_DIVERGED, debug=_debug_requested())
        except WorkerLostError as error:
            fail(error, EXIT_WORKER_LOST, debug=_debug_requested())
        except BAD_INPUT_ERRORS as error:
            fail(error, EXIT_BAD_INPUT, debug=_debug_requested())

    app.run(wrapped, flags_parser=parse_flags)
