"""The API's route groups; `web_tool.server.make_app` adds each to the app."""
