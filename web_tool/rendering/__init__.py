"""Rendering: turning imagery and class probabilities into what the map shows (the seed's
/predPatch and /getInput, XYZ tiles of imagery and predictions, "label here next" suggestions)."""
