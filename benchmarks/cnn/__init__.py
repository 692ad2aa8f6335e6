"""Tree-detection CNN sweep for issue 15 (see DEVICE.md); imports nothing from tiler."""
