"""Tests of jobengine/cli/."""
