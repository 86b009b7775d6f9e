"""Large-area mapping: predicting an area window by window (in threads or on a Dask cluster),
the job queue that runs it, and the exports (GeoTIFF, styles, vectors, class statistics)."""
