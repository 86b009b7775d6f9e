"""Tests of web_tool/mapping/."""
