"""Tests of jobengine/access/."""
