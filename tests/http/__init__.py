"""Tests of web_tool/http/."""
