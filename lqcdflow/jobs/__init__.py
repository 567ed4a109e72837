"""The batch jobs' shell helpers (``common.sh``), shipped with the package.

The job scripts in the repository's ``jobs/`` (Slurm, PBS) are templates a user copies and
edits anywhere; they find the helpers of the lqcdflow they run with
``source "$(python3 -m lqcdflow.jobs)"``, so that a copied script needs no path to the
repository, and the helpers always match the installed ``lqcdflow`` commands they call.
"""

from pathlib import Path

HELPERS = Path(__file__).resolve().with_name("common.sh")
