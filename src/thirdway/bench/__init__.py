"""Benchmarks behind ``thirdway bench …``; every README performance number comes from here."""
