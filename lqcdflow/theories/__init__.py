"""Lattice actions."""
