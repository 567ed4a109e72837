"""HDF5 input and output."""
