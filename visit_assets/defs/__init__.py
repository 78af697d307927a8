"""Dagster definitions, one folder per domain; pure logic lives in visit_assets.lib."""
