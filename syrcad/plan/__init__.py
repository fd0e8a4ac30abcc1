"""Stage 2: a validated Cluster → a Placement (which container runs where, on which ports)."""

from syrcad.plan.placement import (
    BALANCED,
    START_ORDER,
    Backend,
    Container,
    Placement,
    PortBinding,
    Service,
    place,
)

__all__ = [
    "BALANCED",
    "START_ORDER",
    "Backend",
    "Container",
    "Placement",
    "PortBinding",
    "Service",
    "place",
]
