"""Pipeline steps, one module per family; :mod:`tiler.steps.registry` maps names to classes."""
