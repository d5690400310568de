"""The local devnet: a discovery service and provider nodes on loopback (``golem devnet``).

Its own distribution (``golem-vm-devnet``, the repository's ``devnet/`` folder),
so golem's wheel carries no server code. ``network.Devnet`` runs it in an event
loop; ``cli`` adds ``golem devnet`` to golem's root group. See docs/devnet.md.
Importing this package imports nothing: ``golem --help`` loads ``cli`` only.
"""
