"""``python3 -m lqcdflow.jobs`` prints the path of the batch jobs' shell helpers."""

from lqcdflow.jobs import HELPERS

print(HELPERS)
