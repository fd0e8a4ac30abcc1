"""syrcad: run Rasa chatbots at scale on on-premise Docker hosts, without Kubernetes.

The data flows one way, one sub-package per stage:

    hosts.yml --config--> Cluster --plan--> Placement --render--> files --apply--> hosts

Only `syrcad.apply` talks to Docker or SSH; everything before it is pure.
"""

__version__ = "0.1.0"
