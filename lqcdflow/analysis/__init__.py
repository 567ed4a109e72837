"""Error analysis of ensembles (Wolff's Gamma method through pyerrors)."""
