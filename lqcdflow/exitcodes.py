"""Exit codes of the lqcdflow command and its error line, documented in the README ("Errors and
exit codes")."""

EXIT_CORRUPT = 1   # ``info`` found a checksum mismatch (also what MPI_Abort returns)
EXIT_USAGE = 2     # the input cannot be used: one line on stderr, nothing written
EXIT_RESUBMIT = 3  # stopped early (signal or walltime) with a checkpoint: resubmit


def error_line(message):
    """``lqcdflow: error: MESSAGE`` as one line: a line break that came in with a name or path
    is shown as ``\\n``, so that every error is one line of a batch log.

    >>> error_line("output file a\\nb.h5 is a directory")
    'lqcdflow: error: output file a\\\\nb.h5 is a directory'
    """
    return "lqcdflow: error: " + str(message).replace("\r", "\\r").replace("\n", "\\n")
