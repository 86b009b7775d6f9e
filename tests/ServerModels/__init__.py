"""Tests of web_tool/ServerModels/."""
