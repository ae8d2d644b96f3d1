"""Tests of jobengine/kinds/."""
