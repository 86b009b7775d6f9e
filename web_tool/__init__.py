"""Interactive land-cover mapping tool: Bottle server, DataLoader, Keras ServerModels."""

__version__ = "0.1.0"
