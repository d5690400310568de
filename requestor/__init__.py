"""golem: rent VMs from providers on the Golem Network and get a shell on them."""

__version__ = "0.1.0"
