"""The local devnet: a discovery service and provider nodes on loopback (``golem devnet``).

``network.Devnet`` runs it in an event loop, ``threaded.DevnetThread`` in a
background thread; see docs/devnet.md. Importing this package imports nothing.
"""
