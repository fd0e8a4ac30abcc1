"""Stage 1: hosts.yml → a validated, frozen `Cluster`."""

from syrcad.config.loader import Loaded, Source, load
from syrcad.config.model import Cluster, Host

__all__ = ["Cluster", "Host", "Loaded", "Source", "load"]
