"""Imagery: what each raster file is (grid, bands, masks, footprint), how it is opened locally or
remotely, scaled to the model's input and the map's display, and summarised in overviews.
`web_tool/DataLoader.py` builds on these to read any extent."""
