"""Array kernels shared by theories and integrators, tuned for the caches of CPUs."""
