"""Test harness around the devnet: it lives with the tests, not in either distribution.

``threaded.DevnetThread`` hosts a devnet in a background thread (the pytest
fixtures in tests/plugins/devnet.py, and bench/); ``fleet.create_fleet`` fills one
with VMs through the requestor's service layer, which the devnet itself must not
import.
"""
