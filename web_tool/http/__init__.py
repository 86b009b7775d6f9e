"""Everything that knows HTTP: JSON plumbing and the error plugin, origins and auth, admission of
heavy work, the request models, OpenAPI, the WSGI server and the route groups."""
