"""Tests of web_tool/learning/."""
