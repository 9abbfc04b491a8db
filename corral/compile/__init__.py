"""The compile layer: one module per enforcement target, each a pure ``Policy -> files`` function.

``render.TARGETS`` lists them in output order; ``corral render`` writes each into its own folder.
"""
