"""Tests of web_tool/imagery/."""
