"""Markov chain Monte Carlo: molecular-dynamics integrators and HMC."""
