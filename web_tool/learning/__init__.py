"""Learning from corrections: the corrections themselves, the training samples drawn from them,
the fit and its honest hold-out, and the sessions (with their SQLite store) that hold it all."""
