"""Tests of web_tool/validate/."""
