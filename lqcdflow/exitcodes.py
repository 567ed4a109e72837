"""Exit codes of the lqcdflow command, documented in the README ("Errors and exit codes")."""

EXIT_CORRUPT = 1   # ``info`` found a checksum mismatch (also what MPI_Abort returns)
EXIT_USAGE = 2     # the input cannot be used: one line on stderr, nothing written
EXIT_RESUBMIT = 3  # stopped early (signal or walltime) with a checkpoint: resubmit
