"""Examples of user-supplied segmenters for the ``model:`` step."""
