"""The API's route groups; `web_tool.http.app.make_app` adds each to the app."""
