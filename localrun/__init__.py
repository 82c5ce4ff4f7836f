"""Run the real pipeline on this machine, in an embedded AWS emulator (moto): ``python -m localrun`` / ``make demo``.

Only Ground Truth and its taxonomists are simulated; see docs/demo.md for what is real and what is not.
"""
