"""Tests of jobengine/operations/."""
