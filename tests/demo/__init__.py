"""Tests of web_tool/demo/."""
