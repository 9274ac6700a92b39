"""The random-weight sizes the cost benchmarks build (``bench-cost``, ``bench-loop``): one list,
which the commands' flags and defaults are made from."""

COST_CONFIGS = ("embedded", "amused-256", "dimoo-8b", "maskgit-512")
# bench-loop also has dimoo-stub: DiMOO's grid and codebook around a model that costs nothing.
LOOP_SIZES = ("embedded", "amused-256", "dimoo-8b", "dimoo-stub", "maskgit-512")
