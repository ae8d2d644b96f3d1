"""Tests of jobengine/store/."""
