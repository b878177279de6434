"""Tests of ratemw.algorithms."""

from __future__ import annotations
