"""Tests of web_tool/rendering/."""
