"""Tests of jobengine/web/."""
