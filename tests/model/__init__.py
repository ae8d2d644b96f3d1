"""Tests of jobengine/model/."""
